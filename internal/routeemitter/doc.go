// Package routeemitter is minicf's Diego route-emitter: it watches the
// BBS's LRP instance events, joins every RUNNING, routable ActualLRP with
// the cf-router routes of its DesiredLRP in a routing table keyed by
// (process guid, container port), and publishes the difference of every
// change on NATS as router.register and router.unregister, with the field
// choices of Diego's emitter (one URI per message, tls_port = the sidecar's
// host port, server_cert_domain_san = the instance guid).
//
// Like Diego's, it greets the routers (router.greet, every second until one
// answers) to learn their register interval, re-registers the whole table
// at that interval (the heartbeat that keeps routes fresh), re-emits
// everything after a random jitter when a router announces itself with
// router.start, rebuilds the table from the BBS every sync interval while
// keeping the events that arrive during the sync, and re-sends each
// unregistration a few times because NATS delivers at most once.
//
// In local mode (a cell id) it watches and lists only its cell's instances,
// as the cell-local emitter of cf-deployment does; in global mode, every
// cell's. The table (Table) is pure and carries the ordering rules: a change
// older than what the table holds, by modification tag, is ignored.
package routeemitter
