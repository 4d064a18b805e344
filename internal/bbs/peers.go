package bbs

import "context"

// Auctioneer is what the BBS needs from the auctioneer: somewhere to send
// instances that need a cell. The HTTP client in package auctioneer
// implements it.
type Auctioneer interface {
	RequestLRPStarts(ctx context.Context, reqs []LRPStartRequest) error
}

// RepClient is what the BBS needs from the cells: a way to stop an
// instance a cell runs. The HTTP client in package rep implements it.
type RepClient interface {
	StopLRPInstance(ctx context.Context, cell *CellPresence, key ActualLRPKey, ik ActualLRPInstanceKey) error
}
