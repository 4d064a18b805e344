package bbs

import (
	"context"
	"time"
)

// Store keeps the BBS's records. Every change happens in a transaction, so
// a change that touches several records (desiring an LRP creates it and its
// instances) is stored whole or not at all. The BBS runs one writer at a
// time (it holds its own lock around write transactions, as Diego runs one
// active BBS), so implementations need not resolve write conflicts beyond
// what their database does.
type Store interface {
	// Read runs f in a read-only transaction.
	Read(ctx context.Context, f func(StoreTx) error) error
	// Write runs f in a read-write transaction, committed if f returns nil.
	Write(ctx context.Context, f func(StoreTx) error) error
	Close() error
}

// StoreTx is what one transaction can do.
type StoreTx interface {
	// DesiredLRP returns ErrResourceNotFound when there is none.
	DesiredLRP(processGUID string) (*DesiredLRP, error)
	DesiredLRPs(filter DesiredLRPsRequest) ([]*DesiredLRP, error)
	// CreateDesiredLRP returns ErrResourceExists when the guid is taken.
	CreateDesiredLRP(d *DesiredLRP) error
	// UpdateDesiredLRP replaces a stored DesiredLRP (ErrResourceNotFound if none).
	UpdateDesiredLRP(d *DesiredLRP) error
	DeleteDesiredLRP(processGUID string) error

	// ActualLRP returns ErrResourceNotFound when there is none.
	ActualLRP(processGUID string, index int32) (*ActualLRP, error)
	ActualLRPs(filter ActualLRPsRequest) ([]*ActualLRP, error)
	// CreateActualLRP returns ErrResourceExists when the slot is taken.
	CreateActualLRP(a *ActualLRP) error
	UpdateActualLRP(a *ActualLRP) error
	DeleteActualLRP(processGUID string, index int32) error

	// Task returns ErrResourceNotFound when there is none.
	Task(taskGUID string) (*Task, error)
	// Tasks lists tasks by domain and cell (either may be empty), sorted by guid.
	Tasks(filter TasksRequest) ([]*Task, error)
	// CreateTask returns ErrResourceExists when the guid is taken.
	CreateTask(t *Task) error
	// UpdateTask replaces a stored task (ErrResourceNotFound if none).
	UpdateTask(t *Task) error
	DeleteTask(taskGUID string) error

	UpsertDomain(domain string, expiresAt time.Time) error
	// FreshDomains lists domains whose expiry is after now.
	FreshDomains(now time.Time) ([]string, error)
}
