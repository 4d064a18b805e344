// Package cli is minicf's cf CLI: verbs that drive the Cloud Controller v3
// API.
//
// The verbs (push, apps, app, routes, create-route, map-route, unmap-route,
// delete-route, scale, start, stop, restart, delete, logs, target) send the
// same requests, in the same order, as the stock cf CLI v8 does (see
// ../shared/cf-cli-v8.md), so the Cloud Controller that serves one serves
// the other. They read the foundation's address, token and target from
// $MINICF_HOME/config.json, which `minicf up` writes.
//
// Output follows the cf CLI: progress on stdout, warnings and errors on
// stderr, tables with three-space gutters, and FAILED (with a non-zero exit
// code) when a verb fails.
package cli
