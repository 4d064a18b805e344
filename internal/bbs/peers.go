package bbs

import (
	"context"
	"errors"
)

// Auctioneer is what the BBS needs from the auctioneer: somewhere to send
// instances and Tasks that need a cell. The HTTP client in package
// auctioneer implements it.
type Auctioneer interface {
	RequestLRPStarts(ctx context.Context, reqs []LRPStartRequest) error
	RequestTaskAuctions(ctx context.Context, reqs []TaskStartRequest) error
}

// RepClient is what the BBS needs from the cells: a way to stop an
// instance a cell runs, and to cancel a Task it runs. The HTTP client in
// package rep implements it.
type RepClient interface {
	StopLRPInstance(ctx context.Context, cell *CellPresence, key ActualLRPKey, ik ActualLRPInstanceKey) error
	CancelTask(ctx context.Context, cell *CellPresence, taskGUID string) error
}

// ErrInstanceNotOnCell is what a RepClient returns (wrapped) when the cell
// says it does not run the instance it was asked to stop: the BBS then
// removes the instance itself instead of waiting for a removal that will
// never come.
var ErrInstanceNotOnCell = errors.New("the cell does not run this instance")
