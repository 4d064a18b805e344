package trace

import (
	"encoding/json"
	"time"
)

// Test fixture: flow 1 for hello.apps.localhost with one instance, as the
// components emit it, in namespace or process mode.

var base = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

const (
	app     = "6b1c2d3e-aaaa-4bbb-8ccc-000000000001"
	proc    = "9f8e7d6c-aaaa-4bbb-8ccc-000000000002-7a1b2c"
	inst    = "5d2e1a0b-1111-4222-8333-444"
	reqID   = "0b6c3c9e-5f1a-4d2b-9e8f-123456789abc"
	helloRt = "hello.apps.localhost"
)

func at(ms float64) time.Time { return base.Add(time.Duration(ms * float64(time.Millisecond))) }

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func flowEvents(mode string) []Event {
	evs := []Event{
		{Time: at(0), Step: StepRouteMapped, Component: "cc", Route: helloRt, AppGUID: app,
			Detail:   "route hello.apps.localhost mapped to app " + app + ": process type web, port 8080, http1",
			Artifact: raw(`{"app_guid":"` + app + `","port":8080,"process_type":"web","protocol":"http1","route":"hello.apps.localhost"}`)},
		{Time: at(2312.5), Step: StepLRPDesired, Component: "bbs", ProcessGUID: proc, AppGUID: app,
			Detail:   "DesiredLRP stored: 1 instance(s), ports [8080], routes hello.apps.localhost",
			Artifact: raw(`{"process_guid":"` + proc + `","domain":"cf-apps","instances":1,"ports":[8080],"routes":{"cf-router":[{"hostnames":["hello.apps.localhost"],"port":8080,"protocol":"http1"}]}}`)},
		{Time: at(2420.25), Step: StepInstancePlaced, Component: "auctioneer", ProcessGUID: proc, CellID: "cell-1",
			Detail:   "instance 0 placed on cell-1, the best score of 2 cell(s) (256 MB)",
			Artifact: raw(`{"cell_id":"cell-1","cells":2,"index":0,"process_guid":"` + proc + `"}`)},
	}
	if mode == "namespace" {
		evs = append(evs,
			Event{Time: at(2461), Step: StepContainerCreated, Component: "garden", ProcessGUID: proc, InstanceGUID: inst, CellID: "cell-1",
				Detail:   "container " + inst + ": network namespace mcf-c1-" + inst + ", overlay IP 10.244.1.2",
				Artifact: raw(`{"handle":"` + inst + `","mode":"namespace","container_ip":"10.244.1.2","cell_ip":"10.244.0.11","mapped_ports":[{"container_port":61001,"host_port":61000}]}`)},
			Event{Time: at(2480.5), Step: StepDNATApplied, Component: "garden", ProcessGUID: proc, InstanceGUID: inst, CellID: "cell-1",
				Detail: "1 DNAT rule(s) in chain netin--5d2e1a0b-1111-4222-8 of mcf-cell-1's nat table",
				Artifact: raw(`{"namespace":"mcf-cell-1","table":"nat","chain":"netin--5d2e1a0b-1111-4222-8","rules":[` +
					`"-A PREROUTING -j netin--5d2e1a0b-1111-4222-8",` +
					`"-A netin--5d2e1a0b-1111-4222-8 -d 10.244.0.11/32 -p tcp -m tcp --dport 61000 -j DNAT --to-destination 10.244.1.2:61001"]}`)},
			Event{Time: at(2530), Step: StepEnvoyListening, Component: "rep", ProcessGUID: proc, InstanceGUID: inst, CellID: "cell-1",
				Detail: "envoy answers on 10.244.1.2:61001",
				Artifact: raw(`{"address":"10.244.1.2:61001","proxies_to":"127.0.0.1:8080","cn":"` + inst + `","serial":"1A2B3C",` +
					`"not_before":"2025-03-04T09:59:00Z","not_after":"2025-03-05T10:00:00Z"}`)},
			Event{Time: at(2611.75), Step: StepActualLRPRunning, Component: "bbs", ProcessGUID: proc, InstanceGUID: inst, CellID: "cell-1",
				Detail:   "ActualLRP RUNNING at 10.244.0.11",
				Artifact: raw(`{"process_guid":"` + proc + `","index":0,"instance_guid":"` + inst + `","cell_id":"cell-1","address":"10.244.0.11","instance_address":"10.244.1.2","ports":[{"container_port":8080,"host_port":0,"container_tls_proxy_port":61001,"host_tls_proxy_port":61000}],"state":"RUNNING"}`)},
			Event{Time: at(2614), Step: StepRouteRegistered, Component: "route-emitter", Route: helloRt, AppGUID: app, InstanceGUID: inst, CellID: "cell-1",
				Detail:   "router.register published on NATS (event)",
				Artifact: raw(`{"host":"10.244.0.11","port":0,"tls_port":61000,"uris":["hello.apps.localhost"],"app":"` + app + `","private_instance_id":"` + inst + `","private_instance_index":"0","server_cert_domain_san":"` + inst + `"}`)},
			Event{Time: at(2615.5), Step: StepRouteAdded, Component: "router", Route: helloRt, AppGUID: app, InstanceGUID: inst,
				Detail:   "10.244.0.11:61000 added to the pool of hello.apps.localhost",
				Artifact: raw(`{"address":"10.244.0.11:61000","protocol":"http1","tls":true,"ttl":120,"private_instance_id":"` + inst + `","server_cert_domain_san":"` + inst + `"}`)},
		)
	} else {
		evs = append(evs,
			Event{Time: at(2461), Step: StepContainerCreated, Component: "garden", ProcessGUID: proc, InstanceGUID: inst, CellID: "cell-1",
				Artifact: raw(`{"handle":"` + inst + `","mode":"process","container_ip":"127.0.0.1","cell_ip":"127.0.0.1"}`)},
			Event{Time: at(2461.5), Step: StepDNATNotInProcessMode, Component: "garden", ProcessGUID: proc, InstanceGUID: inst, CellID: "cell-1",
				Artifact: raw(`{"mode":"process"}`)},
			Event{Time: at(2530), Step: StepEnvoyListening, Component: "rep", ProcessGUID: proc, InstanceGUID: inst, CellID: "cell-1",
				Artifact: raw(`{"address":"127.0.0.1:61001","proxies_to":"127.0.0.1:61002","cn":"` + inst + `","serial":"1A2B3C","not_after":"2025-03-05T10:00:00Z"}`)},
			Event{Time: at(2611.75), Step: StepActualLRPRunning, Component: "bbs", ProcessGUID: proc, InstanceGUID: inst, CellID: "cell-1",
				Artifact: raw(`{"index":0,"instance_guid":"` + inst + `"}`)},
			Event{Time: at(2614), Step: StepRouteRegistered, Component: "route-emitter", Route: helloRt, AppGUID: app, InstanceGUID: inst, CellID: "cell-1",
				Artifact: raw(`{"host":"127.0.0.1","tls_port":61001,"uris":["hello.apps.localhost"]}`)},
			Event{Time: at(2615.5), Step: StepRouteAdded, Component: "router", Route: helloRt, AppGUID: app, InstanceGUID: inst,
				Artifact: raw(`{"address":"127.0.0.1:61001","tls":true,"private_instance_id":"` + inst + `","server_cert_domain_san":"` + inst + `"}`)},
		)
	}
	return append(evs, Event{Time: at(2700), Step: StepFirstRequest, Component: "router", Route: helloRt, AppGUID: app, InstanceGUID: inst,
		Detail:   "first request to the endpoint",
		Artifact: raw(`{"request_id":"` + reqID + `","method":"GET","host":"hello.apps.localhost","path":"/","endpoint":"` + endpointOf(mode) + `","tls":true,"status":200}`)})
}

func endpointOf(mode string) string {
	if mode == "namespace" {
		return "10.244.0.11:61000"
	}
	return "127.0.0.1:61001"
}

// noise is what else a foundation records meanwhile: another app's
// journey and a staging-free restart of nothing related.
func noise() []Event {
	return []Event{
		{Time: at(100), Step: StepRouteMapped, Component: "cc", Route: "other.apps.localhost", AppGUID: "other-app"},
		{Time: at(200), Step: StepLRPDesired, Component: "bbs", ProcessGUID: "other-proc", AppGUID: "other-app",
			Artifact: raw(`{"routes":{"cf-router":[{"hostnames":["other.apps.localhost"],"port":8080}]}}`)},
		{Time: at(300), Step: StepInstancePlaced, Component: "auctioneer", ProcessGUID: "other-proc", CellID: "cell-2"},
		{Time: at(400), Step: StepContainerCreated, Component: "garden", ProcessGUID: "other-proc", InstanceGUID: "other-inst", CellID: "cell-2"},
		{Time: at(500), Step: StepRouteRegistered, Component: "route-emitter", Route: "other.apps.localhost", InstanceGUID: "other-inst"},
	}
}

func stamp(evs []Event) []Stamped {
	out := make([]Stamped, len(evs))
	for i, e := range evs {
		out[i] = Stamped{Seq: uint64(i + 1), Event: e}
	}
	return out
}

func steps(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Step
	}
	return out
}
