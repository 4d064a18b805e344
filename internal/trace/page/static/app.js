// minicf flow page: draws flow 1 and animates a route's journey.
//
// Data, all from the trace API on this origin:
//   GET /api/steps           flow 1, in order (titles and why)
//   GET /api/events?route=R  the journey of route R so far
//   GET /api/stream[?route=R] Server-Sent Events "trace": new events
//   GET /api/state           the router's routes, the BBS's cells and LRPs
'use strict';

(() => {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const STATE_EVERY_MS = 1500;
  const REDUCED = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;

  // ---------------------------------------------------------------- model

  // The boxes of the diagram (viewBox 0 0 1200 470). group picks the colour.
  const BOXES = {
    cli: { x: 20, y: 40, w: 115, h: 70, title: 'minicf CLI', sub: 'push, map-route', group: 'client', tip: "The developer's side: minicf push uploads the bits and applies the manifest (the cf CLI's role)." },
    cc: { x: 210, y: 40, w: 140, h: 70, title: 'Cloud Controller', sub: 'v3 API: apps, routes', group: 'cc', tip: 'Cloud Controller (v3 API): the source of truth for apps, processes, routes and destinations; it desires LRPs in the BBS.' },
    bbs: { x: 425, y: 40, w: 140, h: 70, title: 'BBS', sub: 'Diego LRP store', group: 'diego', tip: "Diego's Bulletin Board System: stores DesiredLRPs and ActualLRPs and streams their events." },
    auctioneer: { x: 640, y: 40, w: 140, h: 70, title: 'auctioneer', sub: 'places instances', group: 'diego', tip: "Diego's auctioneer: scores the cells and places each instance on one." },
    rep: { x: 835, y: 56, w: 325, h: 50, title: 'rep + executor', sub: 'claims, runs, health-checks', group: 'cell', tip: "The cell's rep and executor: claim the instance, run it, health-check it, report it RUNNING." },
    garden: { x: 835, y: 130, w: 325, h: 50, title: 'Garden', sub: 'netns, veth, overlay IP', group: 'cell', tip: "Garden and its external networker: network namespace, veth pair, overlay IP from the cell's /24." },
    iptables: { x: 835, y: 204, w: 325, h: 50, title: 'iptables DNAT', sub: 'cell port → envoy :61001', group: 'cell', tip: "kawasaki/silk: the netin--<handle> chain that DNATs a cell port to the container's envoy port." },
    envoy: { x: 850, y: 310, w: 145, h: 64, title: 'envoy', sub: 'TLS :61001 → app', group: 'cell', tip: 'The envoy sidecar: TLS with the instance identity certificate (SAN = instance guid), proxying to the app.' },
    app: { x: 1005, y: 310, w: 140, h: 64, title: 'app', sub: 'PORT=8080', group: 'cell', tip: 'The app process, listening on $PORT (8080) inside the container.' },
    user: { x: 20, y: 340, w: 115, h: 70, title: 'user', sub: 'curl :8081', group: 'client', tip: 'Anyone curling the route through the router.' },
    router: { x: 210, y: 340, w: 140, h: 70, title: 'router', sub: 'GoRouter: pools, TLS', group: 'routing', tip: 'GoRouter: the route table of pools, load balancing, TLS to the cell port with the SAN checked.' },
    nats: { x: 425, y: 340, w: 140, h: 70, title: 'NATS', sub: 'router.* subjects', group: 'routing', tip: 'NATS: the bus of router.register / router.unregister between route emitters and routers.' },
    emitter: { x: 640, y: 340, w: 140, h: 70, title: 'route emitter', sub: 'BBS events → NATS', group: 'routing', tip: 'The route emitter: joins ActualLRPs with DesiredLRP routes and publishes them on NATS.' },
  };
  const CELL_FRAME = { x: 815, y: 14, w: 365, h: 380 };
  const CONTAINER_FRAME = { x: 835, y: 278, w: 325, h: 106 };

  // Each place of flow 1 as drawn: the box that lights up, the boxes lit
  // with it, and the hop into it (segments [from, side@pos, to, side@pos]).
  // label: which segment carries the latency pill, and how far it is moved.
  const VIEW = {
    1: { box: 'cc', also: ['cli'], hop: [['cli', 'r', 'cc', 'l']], label: { seg: 0, dx: 0, dy: -17 } },
    2: { box: 'bbs', hop: [['cc', 'r', 'bbs', 'l']], label: { seg: 0, dx: 0, dy: -17 } },
    3: { box: 'auctioneer', hop: [['bbs', 'r', 'auctioneer', 'l']], label: { seg: 0, dx: 0, dy: -17 } },
    4: { box: 'garden', also: ['rep'], hop: [['auctioneer', 'r@0.5', 'rep', 'l@0.35'], ['rep', 'b@0.12', 'garden', 't@0.12']],
      label: { seg: 1, dx: 22, dy: 0, align: 'start' } },
    5: { box: 'iptables', hop: [['garden', 'b@0.12', 'iptables', 't@0.12']], label: { seg: 0, dx: 22, dy: 0, align: 'start' } },
    6: { box: 'envoy', also: ['rep'], hop: [['iptables', 'b@0.12', 'envoy', 't@0.28']], label: { seg: 0, dx: 22, dy: 0, align: 'start' } },
    7: { box: 'bbs', also: ['rep'], hop: [['rep', 'l@0.75', 'bbs', 'b@0.3']], label: { seg: 0, dx: 30, dy: 8 }, k: 90 },
    8: { box: 'emitter', also: ['nats'], hop: [['bbs', 'b@0.7', 'emitter', 't@0.5']], label: { seg: 0, dx: 16, dy: 44 } },
    9: { box: 'router', also: ['nats'], hop: [['emitter', 'l', 'nats', 'r'], ['nats', 'l', 'router', 'r']], label: { seg: 1, dx: 0, dy: -17 } },
    10: { box: 'app', also: ['user', 'router', 'envoy'],
      hop: [['user', 'r', 'router', 'l'], ['router', 'b@0.5', 'envoy', 'b@0.5'], ['envoy', 'r', 'app', 'l']],
      label: { seg: 1, dx: 0, dy: 0 }, k: 46 },
  };

  // The component each step's emitter is drawn as (trace.Event.component).
  const COMPONENT_GROUP = { cc: 'cc', bbs: 'diego', auctioneer: 'diego', garden: 'cell', rep: 'cell',
    'route-emitter': 'routing', router: 'routing' };

  // Flow 1 until /api/steps answers (same order as internal/trace.Flow).
  let FLOW = [
    { order: 1, steps: ['route-mapped'], component: 'cc', title: 'route mapped in the Cloud Controller' },
    { order: 2, steps: ['lrp-desired', 'lrp-updated'], component: 'bbs', title: 'LRP desired (or updated) in the BBS' },
    { order: 3, steps: ['instance-placed'], component: 'auctioneer', title: 'instance placed on a cell' },
    { order: 4, steps: ['container-created'], component: 'garden', title: 'container created' },
    { order: 5, steps: ['dnat-applied', 'dnat-not-in-process-mode'], component: 'garden', title: 'DNAT rules applied' },
    { order: 6, steps: ['envoy-listening'], component: 'rep', title: 'envoy listening with the instance identity' },
    { order: 7, steps: ['actual-lrp-running'], component: 'bbs', title: 'ActualLRP RUNNING' },
    { order: 8, steps: ['route-registered'], component: 'route-emitter', title: 'router.register published on NATS' },
    { order: 9, steps: ['route-added'], component: 'router', title: "endpoint added to the router's pool" },
    { order: 10, steps: ['first-request'], component: 'router', title: 'first request served' },
  ];

  function orderOf(step) {
    for (const f of FLOW) if (f.steps.includes(step)) return f.order;
    return 0;
  }
  function flowOf(order) { return FLOW.find((f) => f.order === order); }

  // ---------------------------------------------------------------- state

  const S = {
    route: '',            // the route shown
    follow: true,         // switch to each newly mapped route
    events: [],           // the journey, ordered by time
    keys: new Set(),      // dedupe keys of S.events
    known: new Map(),     // route -> latest route-mapped time (µs), 0 if only in the router
    selected: '',         // key of the expanded step row
    state: null,          // the latest /api/state
    routeStream: null,
    allStream: null,
    pending: null,        // events that arrived while the history loads
    gen: 0,               // bumps on each route change, so late answers are dropped
    replaying: false,
    liveCount: 0,         // events taken from /api/stream (not the history)
  };

  // ---------------------------------------------------------------- helpers

  const $ = (sel) => document.querySelector(sel);

  function h(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') n.className = v;
      else if (k === 'text') n.textContent = v;
      else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids.flat()) {
      if (c === undefined || c === null || c === false) continue;
      n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return n;
  }

  function s(tag, attrs, ...kids) {
    const n = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'text') n.textContent = v;
      else n.setAttribute(k, String(v));
    }
    for (const c of kids) if (c) n.append(c);
    return n;
  }

  const short = (g) => (g && g.length > 8 ? g.slice(0, 8) : g || '');

  // micros parses an RFC 3339 time with up to nanoseconds into µs since
  // the epoch (Date keeps milliseconds only; steps are often < 1 ms apart).
  function micros(t) {
    const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(t || '');
    if (!m) return Date.parse(t) * 1000;
    const frac = ((m[2] || '') + '000000').slice(0, 6);
    return Date.parse(m[1] + m[3]) * 1000 + Number(frac);
  }

  function fmtMs(ms) {
    if (!isFinite(ms)) return '';
    const a = Math.abs(ms);
    if (a >= 10000) return (ms / 1000).toFixed(1) + ' s';
    if (a >= 1000) return (ms / 1000).toFixed(2) + ' s';
    if (a >= 100) return ms.toFixed(0) + ' ms';
    return ms.toFixed(1) + ' ms';
  }

  function clock(us) {
    const d = new Date(us / 1000);
    return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  function parseArtifact(e) {
    if (e.artifact === undefined || e.artifact === null) return null;
    if (typeof e.artifact === 'object') return e.artifact;
    try { return JSON.parse(e.artifact); } catch { return null; }
  }

  function keyOf(e) {
    return [e.time, e.step, e.component, e.instance_guid || '', e.process_guid || '', e.route || ''].join('|');
  }

  function hostOf(addr) { return (addr || '').replace(/:\d+$/, ''); }
  function portOf(addr) { const m = /:(\d+)$/.exec(addr || ''); return m ? m[1] : ''; }

  // summary is the one-line artifact summary of a step for people.
  function summary(e) {
    const a = parseArtifact(e) || {};
    switch (e.step) {
      case 'route-mapped':
        return `${a.route || e.route} → app ${short(a.app_guid || e.app_guid)}: ${a.process_type || 'web'} process, port ${a.port ?? '?'}, ${a.protocol || 'http1'}`;
      case 'lrp-desired':
      case 'lrp-updated': {
        const hosts = ((a.routes && a.routes['cf-router']) || []).flatMap((r) => r.hostnames || []);
        const changed = a.changed ? ` (changed: ${[].concat(a.changed).join(', ')})` : '';
        return `DesiredLRP ${short(a.process_guid || e.process_guid)}: ${a.instances ?? '?'} instance(s), ports [${(a.ports || []).join(', ')}], cf-router ${hosts.join(', ') || '-'}${changed}`;
      }
      case 'instance-placed':
        return `index ${a.index ?? '?'} → ${a.cell_id || e.cell_id}${a.cells ? ` (auction among ${a.cells} cell${a.cells === 1 ? '' : 's'})` : ''}`;
      case 'container-created':
        return `container ${short(a.handle || e.instance_guid)}: ${a.mode || ''} mode, IP ${a.container_ip || '?'} on cell ${a.cell_ip || '?'}${a.namespace ? `, netns ${a.namespace}` : ''}`;
      case 'dnat-applied': {
        const rules = [].concat(a.rules || []);
        const dnat = rules.find((r) => /DNAT/.test(r)) || rules[rules.length - 1] || '';
        const m = /-d (\S+?)(?:\/32)? .*--dport (\d+) .*--to-destination (\S+)/.exec(dnat);
        return m ? `DNAT ${m[1]}:${m[2]} → ${m[3]} (chain ${a.chain || '?'})` : (dnat || `chain ${a.chain || '?'}`);
      }
      case 'dnat-not-in-process-mode':
        return 'process mode: no network namespace, so no DNAT; the instance listens on 127.0.0.1 itself';
      case 'envoy-listening':
        return `TLS on ${a.address || '?'} → ${a.proxies_to || '?'}, CN ${short(a.cn)}${a.serial ? `, serial ${String(a.serial).slice(0, 8)}…` : ''}`;
      case 'actual-lrp-running': {
        const ports = (a.ports || []).map(fmtPort).join(', ');
        return `RUNNING at ${a.address || '?'} (instance address ${a.instance_address || '?'})${ports ? `, ports ${ports}` : ''}`;
      }
      case 'route-registered': {
        const port = a.tls_port || a.port;
        return `router.register ${a.host || '?'}:${port || '?'}${a.tls_port ? ' (TLS)' : ''} uris ${(a.uris || []).join(', ')}${a.server_cert_domain_san ? `, SAN ${short(a.server_cert_domain_san)}` : ''}`;
      }
      case 'route-added':
        return `pool entry ${a.address || '?'}${a.tls ? ' TLS' : ''}${a.server_cert_domain_san ? `, SAN ${short(a.server_cert_domain_san)}` : ''}${a.ttl ? `, ttl ${a.ttl}s` : ''}`;
      case 'first-request':
        return `${a.method || 'GET'} ${a.host || e.route}${a.path || '/'} → ${a.status ?? '?'} via ${a.endpoint || '?'}${a.duration_ms !== undefined ? ` in ${Number(a.duration_ms).toFixed(1)} ms` : ''}`;
      default:
        return e.detail || '';
    }
  }

  // note is the short line a box shows for its latest step.
  function note(e) {
    const a = parseArtifact(e) || {};
    switch (e.step) {
      case 'route-mapped': return `app ${short(e.app_guid)}`;
      case 'lrp-desired': case 'lrp-updated': return `${a.instances ?? '?'} instance(s) desired`;
      case 'instance-placed': return `→ ${a.cell_id || e.cell_id}`;
      case 'container-created': return `${a.container_ip || '?'} (${a.mode || ''})`;
      case 'dnat-applied': { const m = summary(e).match(/DNAT \S+?(:\d+) → (\S+)/); return m ? `${m[1]} → ${m[2]}` : 'rules written'; }
      case 'dnat-not-in-process-mode': return 'none in process mode';
      case 'envoy-listening': return `CN ${short(a.cn)}`;
      case 'actual-lrp-running': return `#${a.index ?? '?'} RUNNING`;
      case 'route-registered': return `${a.host || ''}:${a.tls_port || a.port || ''}`;
      case 'route-added': return `+ ${a.address || ''}`;
      case 'first-request': return `${a.status ?? ''} via ${portOf(a.endpoint) ? ':' + portOf(a.endpoint) : ''}`;
      default: return '';
    }
  }

  // alsoNotes are the notes of the boxes a step lights besides its own.
  function alsoNotes(e) {
    const a = parseArtifact(e) || {};
    switch (e.step) {
      case 'container-created': return { rep: e.cell_id ? `claimed on ${e.cell_id}` : '' };
      case 'envoy-listening': return { rep: 'app and envoy answer' };
      case 'route-registered': return { nats: 'router.register' };
      case 'first-request': return { user: `GET → ${a.status ?? '?'}` };
      default: return {};
    }
  }

  // fmtPort reads a port mapping the way a request travels it: the cell's
  // port, envoy's TLS port in the container, the app's port.
  function fmtPort(p) {
    const parts = [];
    if (p.host_tls_proxy_port || p.container_tls_proxy_port) {
      parts.push(`cell :${p.host_tls_proxy_port || '?'} → envoy :${p.container_tls_proxy_port || '?'} → app :${p.container_port || '?'}`);
    }
    if (p.host_port) parts.push(`plain cell :${p.host_port} → app :${p.container_port || '?'}`);
    if (!parts.length) parts.push(`app :${p.container_port || '?'} (no cell port)`);
    return parts.join('; ');
  }

  // ---------------------------------------------------------------- diagram

  const geo = {}; // order -> {paths: [SVGPathElement], label: {g, text}}

  function anchor(b, spec) {
    const [side, posS] = spec.split('@');
    const pos = posS === undefined ? 0.5 : Number(posS);
    switch (side) {
      case 'l': return { x: b.x, y: b.y + b.h * pos, dx: -1, dy: 0 };
      case 'r': return { x: b.x + b.w, y: b.y + b.h * pos, dx: 1, dy: 0 };
      case 't': return { x: b.x + b.w * pos, y: b.y, dx: 0, dy: -1 };
      default: return { x: b.x + b.w * pos, y: b.y + b.h, dx: 0, dy: 1 };
    }
  }

  function curve(seg, k) {
    const a = anchor(BOXES[seg[0]], seg[1]);
    const b = anchor(BOXES[seg[2]], seg[3]);
    const dist = Math.hypot(b.x - a.x, b.y - a.y);
    const kk = Math.min(k || 80, dist / 2);
    const c1 = { x: a.x + a.dx * kk, y: a.y + a.dy * kk };
    const c2 = { x: b.x + b.dx * kk, y: b.y + b.dy * kk };
    const mid = {
      x: (a.x + 3 * c1.x + 3 * c2.x + b.x) / 8,
      y: (a.y + 3 * c1.y + 3 * c2.y + b.y) / 8,
    };
    return { d: `M ${a.x} ${a.y} C ${c1.x} ${c1.y}, ${c2.x} ${c2.y}, ${b.x} ${b.y}`, mid };
  }

  function drawDiagram() {
    const frames = $('#d-frames');
    frames.replaceChildren(
      s('rect', { class: 'frame cell-frame', x: CELL_FRAME.x, y: CELL_FRAME.y, width: CELL_FRAME.w, height: CELL_FRAME.h, rx: 14 }),
      s('text', { class: 'frame-title', id: 'cell-title', x: CELL_FRAME.x + 16, y: CELL_FRAME.y + 24, text: 'Diego cell' }),
      s('rect', { class: 'frame container-frame', x: CONTAINER_FRAME.x, y: CONTAINER_FRAME.y, width: CONTAINER_FRAME.w, height: CONTAINER_FRAME.h, rx: 10 }),
      s('text', { class: 'frame-sub', id: 'container-title', x: CONTAINER_FRAME.x + CONTAINER_FRAME.w - 12, y: CONTAINER_FRAME.y + 20, 'text-anchor': 'end', text: 'container (one per instance)' }),
      s('text', { class: 'lane', x: 20, y: 24, text: 'control plane: Cloud Controller and Diego' }),
      s('text', { class: 'lane', x: 20, y: 454, text: 'routing tier: how a request finds the instance' }),
    );

    const edges = $('#d-edges');
    const labels = $('#d-labels');
    edges.replaceChildren();
    labels.replaceChildren();
    for (const f of FLOW) {
      const v = VIEW[f.order];
      if (!v) continue;
      const paths = [];
      let mid = null;
      v.hop.forEach((seg, i) => {
        const c = curve(seg, v.k);
        const p = s('path', { class: `edge g-${BOXES[v.box].group}`, d: c.d, 'data-order': f.order,
          'marker-end': i === v.hop.length - 1 ? 'url(#arrow)' : null });
        edges.append(p);
        paths.push(p);
        if (i === (v.label ? v.label.seg : v.hop.length - 1)) mid = c.mid;
      });
      const lab = v.label || { dx: 0, dy: 0 };
      const num = s('circle', { class: 'num', cx: 0, cy: 0, r: 9 });
      const numText = s('text', { class: 'num-text', x: 0, y: 4, text: String(f.order) });
      const pill = s('rect', { class: 'pill', x: -11, y: -11, width: 22, height: 22, rx: 11 });
      const txt = s('text', { class: 'pill-text', x: 14, y: 4, text: '' });
      const g = s('g', { class: `label g-${BOXES[v.box].group}`, 'data-order': f.order }, pill, num, numText, txt);
      labels.append(g);
      geo[f.order] = { paths, label: { g, pill, txt, x: mid.x + lab.dx, y: mid.y + lab.dy, align: lab.align || 'middle' } };
      placeLabel(f.order);
    }

    const boxes = $('#d-boxes');
    boxes.replaceChildren();
    for (const [id, b] of Object.entries(BOXES)) {
      const tall = b.h > 56;
      const g = s('g', { class: `box g-${b.group}`, id: `box-${id}`, 'data-box': id },
        s('title', { text: b.tip }),
        s('rect', { class: 'box-bg', x: b.x, y: b.y, width: b.w, height: b.h, rx: 10 }),
        s('rect', { class: 'box-accent', x: b.x, y: b.y + 8, width: 4, height: b.h - 16, rx: 2 }),
        s('text', { class: 'box-title', x: b.x + 14, y: b.y + (tall ? 22 : 21), text: b.title }),
        s('text', { class: 'box-sub', x: b.x + 14, y: b.y + (tall ? 38 : 38), text: b.sub }),
        tall ? s('text', { class: 'box-note', x: b.x + 14, y: b.y + 56, text: '' })
          : s('text', { class: 'box-note', x: b.x + b.w - 12, y: b.y + 21, 'text-anchor': 'end', text: '' }),
        s('g', { class: 'badge', transform: `translate(${b.x + b.w - 8} ${b.y})` },
          s('rect', { class: 'badge-bg', x: -30, y: -9, width: 30, height: 18, rx: 9 }),
          s('text', { class: 'badge-text', x: -15, y: 4, 'text-anchor': 'middle', text: '' })),
      );
      boxes.append(g);
    }
  }

  // placeLabel sizes a hop's pill to its text and puts it at its place:
  // centred on it, or starting there (align start).
  function placeLabel(order) {
    const l = geo[order] && geo[order].label;
    if (!l) return;
    const tw = l.txt.textContent ? l.txt.getComputedTextLength() + 6 : 0;
    const w = 22 + tw;
    l.pill.setAttribute('width', String(w));
    const x0 = l.align === 'start' ? l.x + 11 : l.x - w / 2 + 11;
    l.g.setAttribute('transform', `translate(${x0.toFixed(1)} ${l.y.toFixed(1)})`);
  }

  function setLabel(order, text) {
    const l = geo[order] && geo[order].label;
    if (!l) return;
    l.txt.textContent = text;
    l.g.classList.toggle('has-text', !!text);
    placeLabel(order);
  }

  function resetDiagram() {
    document.querySelectorAll('#d-boxes .box').forEach((b) => {
      b.classList.remove('done', 'flash', 'skipped', 'has-badge');
      b.querySelectorAll('.box-note').forEach((n) => { n.textContent = ''; });
      const bt = b.querySelector('.badge-text');
      bt.textContent = '';
      delete bt.dataset.orders;
    });
    document.querySelectorAll('#d-edges .edge').forEach((p) => {
      p.classList.remove('done', 'hot');
      if (p.getAttribute('marker-end')) p.setAttribute('marker-end', 'url(#arrow)');
    });
    document.querySelectorAll('#d-labels .label').forEach((g) => g.classList.remove('done'));
    for (const o of Object.keys(geo)) setLabel(Number(o), '');
    $('#d-dots').replaceChildren();
  }

  // firstSince is, for each place of flow 1, the time of its first event
  // since the journey's first step (the hop labels are differences of it).
  function firstSince(events) {
    const first = {};
    for (const e of events) {
      const o = orderOf(e.step);
      if (o && first[o] === undefined) first[o] = e.sinceMs;
    }
    return first;
  }

  function paintDiagram() {
    resetDiagram();
    const first = firstSince(S.events);
    for (const e of S.events) markStep(e, first, false);
  }

  // markStep lights the boxes and the hop of e; animate plays it.
  function markStep(e, first, animate) {
    const o = orderOf(e.step);
    const v = VIEW[o];
    if (!v) return;
    const g = $(`#box-${v.box}`);
    for (const id of [v.box].concat(v.also || [])) {
      const b = $(`#box-${id}`);
      b.classList.add('done');
      if (animate) flash(b);
    }
    if (e.step === 'dnat-not-in-process-mode') g.classList.add('skipped');
    const n = note(e);
    if (n) g.querySelectorAll('.box-note').forEach((t) => { t.textContent = n; });
    for (const [id, text] of Object.entries(alsoNotes(e))) {
      if (text) $(`#box-${id}`).querySelectorAll('.box-note').forEach((t) => { t.textContent = text; });
    }
    const badge = g.querySelector('.badge-text');
    const orders = new Set((badge.dataset.orders || '').split(',').filter(Boolean).map(Number));
    orders.add(o);
    badge.dataset.orders = [...orders].join(',');
    badge.textContent = '✓ ' + [...orders].sort((a, b) => a - b).join(',');
    g.classList.add('has-badge');
    const bw = badge.getComputedTextLength() + 14;
    const bg = g.querySelector('.badge-bg');
    bg.setAttribute('width', String(bw));
    bg.setAttribute('x', String(-bw));
    badge.setAttribute('x', String(-bw / 2));
    const gm = geo[o];
    if (gm) {
      gm.paths.forEach((p) => {
        p.classList.add('done');
        if (p.getAttribute('marker-end')) p.setAttribute('marker-end', 'url(#arrow-done)');
      });
      gm.label.g.classList.add('done');
      if (first[o] !== undefined) {
        // From the place before; when that one is not in this journey (a
        // route mapped to running instances), from the nearest one that is.
        let p = o - 1;
        while (p > 0 && first[p] === undefined) p--;
        setLabel(o, o === 1 ? 'start' : p === 0 ? '' : '+' + fmtMs(first[o] - first[p]).replace(' ', ''));
      }
      if (animate) travel(gm.paths);
    }
  }

  function flash(b) {
    b.classList.remove('flash');
    void b.getBBox(); // restart the animation
    b.classList.add('flash');
    setTimeout(() => b.classList.remove('flash'), 1800);
  }

  // travel sends a dot along the hop's segments, one after the other.
  function travel(paths) {
    paths.forEach((p) => {
      p.classList.add('hot');
      setTimeout(() => p.classList.remove('hot'), 1600);
    });
    if (REDUCED) return;
    const dots = $('#d-dots');
    const dot = s('circle', { class: 'dot', r: 6, cx: -20, cy: -20 });
    dots.append(dot);
    const per = 520;
    const start = performance.now();
    function frame(now) {
      // rAF's time is the frame's start, which can be before start.
      const t = Math.max(0, now - start) / per;
      const i = Math.floor(t);
      if (i >= paths.length) { dot.remove(); return; }
      const p = paths[i];
      const len = p.getTotalLength();
      const x = t - i;
      const ease = x < 0.5 ? 2 * x * x : 1 - Math.pow(-2 * x + 2, 2) / 2;
      const pt = p.getPointAtLength(len * ease);
      dot.setAttribute('cx', pt.x);
      dot.setAttribute('cy', pt.y);
      requestAnimationFrame(frame);
    }
    requestAnimationFrame(frame);
  }

  // ---------------------------------------------------------------- journey

  function setEvents(list) {
    S.events = [];
    S.keys = new Set();
    for (const e of list) addEvent(e);
  }

  // addEvent inserts e in time order; false when it is known already.
  function addEvent(e) {
    const k = keyOf(e);
    if (S.keys.has(k)) return false;
    S.keys.add(k);
    e.key = k;
    e.t = micros(e.time);
    let i = S.events.length;
    while (i > 0 && S.events[i - 1].t > e.t) i--;
    S.events.splice(i, 0, e);
    measure();
    return true;
  }

  function measure() {
    const t0 = S.events.length ? S.events[0].t : 0;
    S.events.forEach((e, i) => {
      e.sinceMs = (e.t - t0) / 1000;
      e.deltaMs = i === 0 ? 0 : e.sinceMs - S.events[i - 1].sinceMs;
    });
  }

  function renderSteps() {
    const tbody = $('#steps');
    const total = S.events.length ? S.events[S.events.length - 1].sinceMs : 0;
    const rows = [];
    const seen = new Set();
    S.events.forEach((e, i) => {
      const o = orderOf(e.step);
      seen.add(o);
      const f = flowOf(o);
      const group = COMPONENT_GROUP[e.component] || 'other';
      const prev = i > 0 ? S.events[i - 1].sinceMs : 0;
      const left = total > 0 ? (prev / total) * 100 : 0;
      const width = total > 0 ? Math.max(((e.sinceMs - prev) / total) * 100, 0.6) : 0.6;
      const bar = h('span', { class: `bar g-${group}` });
      bar.style.left = left + '%';
      bar.style.width = width + '%';
      const keys = [];
      if (e.instance_guid) keys.push(`instance ${short(e.instance_guid)}`);
      else if (e.process_guid) keys.push(`process ${short(e.process_guid)}`);
      if (e.cell_id) keys.push(e.cell_id);
      const open = S.selected === e.key;
      const tr = h('tr', {
        class: `step g-${group}${open ? ' open' : ''}${e.fresh ? ' fresh' : ''}`,
        'data-step': e.step, 'data-order': o, 'data-component': e.component, 'data-i': i,
        'data-instance': e.instance_guid || null, tabindex: 0, 'aria-expanded': open ? 'true' : 'false',
        title: f && f.why ? f.why : null,
        onclick: () => toggle(e.key), onkeydown: (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); toggle(e.key); } },
      },
      h('td', { class: 'num' }, h('span', { class: `order g-${group}`, text: o || '?' })),
      h('td', { class: 'stepname' }, h('code', { text: e.step }), h('div', { class: 'steptitle', text: f ? f.title : '' })),
      h('td', { class: 'comp' }, h('span', { class: `chip g-${group}`, text: e.component }), keys.length ? h('div', { class: 'keys', text: keys.join(' · ') }) : null),
      h('td', { class: 'num mono', text: fmtMs(e.sinceMs) }),
      h('td', { class: 'num mono delta', text: i === 0 ? '—' : '+' + fmtMs(e.deltaMs) }),
      h('td', { class: 'bar-col' }, h('span', { class: 'track' }, bar)),
      h('td', { class: 'what' }, h('div', { class: 'artifact mono', text: summary(e) })),
      );
      delete e.fresh;
      rows.push(tr);
      if (open) rows.push(detailRow(e, f));
    });
    // The places of flow 1 not seen yet, in order.
    if (S.route) {
      const earlier = seen.has(8) && !seen.has(4);
      if (earlier) {
        rows.push(h('tr', { class: 'note-row' }, h('td', { colspan: 7, text:
          'The instances were already running when this route was mapped: their placement, container, DNAT, envoy and ' +
          'RUNNING steps happened before this journey began (pick the route they started with to see them). ' +
          'Only the LRP update and the registration are new.' })));
      }
      for (const f of FLOW) {
        if (seen.has(f.order) || (earlier && f.order > 2 && f.order < 8)) continue;
        rows.push(h('tr', { class: 'pending', 'data-pending': f.steps.join('|') },
          h('td', { class: 'num' }, h('span', { class: 'order', text: f.order })),
          h('td', { class: 'stepname' }, h('code', { text: f.steps.join(' | ') }), h('div', { class: 'steptitle', text: f.title })),
          h('td', { class: 'comp' }, h('span', { class: 'chip', text: f.component })),
          h('td', { class: 'num mono', text: '' }),
          h('td', { class: 'num mono', text: '' }),
          h('td', { class: 'bar-col' }),
          h('td', { class: 'what muted', text: f.order === 10 ? 'waiting for a request through the router (curl the route)' : 'waiting…' }),
        ));
      }
    } else {
      rows.push(h('tr', { class: 'pending' }, h('td', { colspan: 7, class: 'muted', text:
        'No route yet. Push an app, for example: minicf push hello -p examples/hello' })));
    }
    tbody.replaceChildren(...rows);
    renderSummary();
  }

  function detailRow(e, f) {
    const a = parseArtifact(e);
    const keys = [['route', e.route], ['app', e.app_guid], ['process', e.process_guid], ['instance', e.instance_guid], ['cell', e.cell_id]]
      .filter(([, v]) => v);
    return h('tr', { class: 'detail-row' }, h('td', { colspan: 7 },
      h('div', { class: 'detail-grid' },
        h('div', {},
          e.detail ? h('p', { class: 'detail' }, h('strong', { text: `${e.component}: ` }), e.detail) : null,
          f && f.why ? h('p', { class: 'why' }, h('strong', { text: 'Why this step: ' }), f.why) : null,
          h('p', { class: 'when mono', text: `at ${clock(e.t)} (${e.time})` }),
          h('dl', { class: 'keys-dl' }, keys.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { class: 'mono', text: v })])),
        ),
        h('pre', { class: 'artifact-json', 'aria-label': 'artifact', text: a ? JSON.stringify(a, null, 2) : '(no artifact)' }),
      )));
  }

  function toggle(key) {
    S.selected = S.selected === key ? '' : key;
    renderSteps();
  }

  function renderSummary() {
    const box = $('#summary');
    if (!S.events.length) { box.replaceChildren(); return; }
    const first = firstSince(S.events);
    const last = S.events[S.events.length - 1].sinceMs;
    const span = (a, b) => (first[a] !== undefined && first[b] !== undefined ? first[b] - first[a] : undefined);
    const items = [
      ['total', last, `${S.events.length} events from ${clock(S.events[0].t)}`],
      S.events.some((e) => e.step === 'lrp-updated')
        ? ['mapped → LRP updated', span(1, 2), "the DesiredLRP's routes change"]
        : ['mapped → LRP desired', span(1, 2), 'mostly staging: the droplet is built'],
      ['desired → RUNNING', span(2, 7), 'placement, container, envoy, health check'],
      ['RUNNING → in the router', span(7, 9), 'route emitter → NATS → router'],
    ];
    box.replaceChildren(...items.filter(([, v]) => v !== undefined).map(([k, v, why]) =>
      h('div', { class: 'stat', title: why }, h('span', { class: 'stat-v mono', text: fmtMs(v) }), h('span', { class: 'stat-k', text: k }), h('span', { class: 'stat-why', text: why }))));
  }

  // ---------------------------------------------------------------- streams

  function setLive(state, text) {
    const l = $('#live');
    l.dataset.state = state;
    l.textContent = text;
  }

  function announce(e) {
    const f = flowOf(orderOf(e.step));
    $('#announce').textContent = `Step ${orderOf(e.step)} of ${FLOW.length}: ${f ? f.title : e.step}, by ${e.component}, ${e.deltaMs ? '+' + fmtMs(e.deltaMs) : ''}`;
  }

  function openAllStream() {
    const es = new EventSource('/api/stream');
    S.allStream = es;
    es.addEventListener('open', () => { if (!S.route) setLive('live', 'live: waiting for a push'); });
    es.addEventListener('error', () => { if (!S.route) setLive('down', 'reconnecting…'); });
    es.addEventListener('trace', (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch { return; }
      if (e.step === 'route-mapped' && e.route) {
        learnRoute(e.route, micros(e.time));
        if (S.follow && e.route !== S.route) selectRoute(e.route);
      } else if (e.route && !S.known.has(e.route)) {
        learnRoute(e.route, 0);
      }
    });
  }

  function selectRoute(route, opts = {}) {
    S.route = route;
    S.gen++;
    const gen = S.gen;
    S.selected = '';
    setEvents([]);
    resetDiagram();
    $('#journey').textContent = route || 'no route yet';
    $('#journey').dataset.route = route;
    document.body.dataset.route = route;
    syncPicker();
    if (!opts.keepURL) {
      const u = new URL(location.href);
      if (S.follow || !route) u.searchParams.delete('route'); else u.searchParams.set('route', route);
      history.replaceState(null, '', u);
    }
    highlightRouteTable();
    if (S.routeStream) { S.routeStream.close(); S.routeStream = null; }
    renderSteps();
    if (!route) return;
    setLive('connecting', 'connecting…');
    const es = new EventSource('/api/stream?route=' + encodeURIComponent(route));
    S.routeStream = es;
    S.pending = [];
    es.addEventListener('open', () => {
      if (gen !== S.gen) return;
      setLive('live', 'live');
      loadHistory(gen); // also after a reconnect: fills what the gap lost
    });
    es.addEventListener('error', () => {
      if (gen !== S.gen) return;
      setLive('down', es.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting…');
    });
    es.addEventListener('trace', (m) => {
      if (gen !== S.gen) return;
      let e;
      try { e = JSON.parse(m.data); } catch { return; }
      if (S.pending) { S.pending.push(e); return; }
      live(e);
    });
  }

  async function loadHistory(gen) {
    if (!S.pending) S.pending = [];
    try {
      const list = await getJSON('/api/events?route=' + encodeURIComponent(S.route));
      if (gen !== S.gen) return;
      const pend = S.pending;
      S.pending = null;
      const before = S.events.length;
      for (const e of list || []) addEvent(e);
      renderSteps();
      paintDiagram();
      for (const e of pend) live(e);
      if (before === 0 && S.events.length) announce(S.events[S.events.length - 1]);
    } catch (err) {
      if (gen !== S.gen) return;
      const pend = S.pending || [];
      S.pending = null;
      for (const e of pend) live(e);
      showError('events: ' + err.message);
    }
  }

  // live takes one event of the chosen route's stream.
  function live(e) {
    if (e.step === 'route-mapped' && S.events.some((x) => x.step === 'route-mapped') && !S.keys.has(keyOf(e))) {
      // The route was mapped again: a new journey starts.
      setEvents([]);
      resetDiagram();
    }
    if (!addEvent(e)) return;
    S.liveCount++;
    document.body.dataset.liveEvents = String(S.liveCount); // tests read it: events that came by the stream
    e.fresh = true;
    renderSteps();
    if (S.replaying) return;
    const first = firstSince(S.events);
    markStep(e, first, true);
    // A late event may change earlier labels (time order): repaint quietly.
    if (S.events[S.events.length - 1] !== e) paintDiagram();
    announce(e);
  }

  async function replay() {
    if (S.replaying || !S.events.length) return;
    S.replaying = true;
    $('#replay').disabled = true;
    const gen = S.gen;
    resetDiagram();
    const first = firstSince(S.events);
    const events = S.events.slice();
    for (const [i, e] of events.entries()) {
      if (gen !== S.gen) break;
      markStep(e, first, true);
      const row = document.querySelector(`#steps tr[data-i="${i}"]`);
      if (row) {
        row.classList.remove('fresh');
        void row.offsetWidth; // restart the animation
        row.classList.add('fresh');
      }
      announce(e);
      await sleep(REDUCED ? 150 : 650);
    }
    S.replaying = false;
    $('#replay').disabled = false;
    if (gen === S.gen) paintDiagram();
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function getJSON(url) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 8000);
    try {
      const r = await fetch(url, { signal: ctl.signal, cache: 'no-store' });
      if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
      return await r.json();
    } finally {
      clearTimeout(timer);
    }
  }

  function showError(msg) {
    const p = $('#state-error');
    if (!msg) { p.hidden = true; p.textContent = ''; return; }
    p.hidden = false;
    p.textContent = msg;
  }

  // ---------------------------------------------------------------- routes

  function learnRoute(route, t) {
    const had = S.known.get(route);
    if (had === undefined || t > had) {
      S.known.set(route, Math.max(t, had || 0));
      syncPicker();
    }
  }

  function syncPicker() {
    const sel = $('#route-picker');
    const routes = [...S.known.entries()].sort((a, b) => (b[1] - a[1]) || a[0].localeCompare(b[0]));
    if (S.route && !S.known.has(S.route)) routes.unshift([S.route, 0]);
    const opts = routes.map(([r, t]) => h('option', { value: r, text: t ? `${r}  (mapped ${clock(t)})` : r }));
    if (!opts.length) opts.push(h('option', { value: '', text: '(waiting for a route to be mapped)' }));
    sel.replaceChildren(...opts);
    sel.value = S.route;
  }

  function latestMapped() {
    let best = '', bt = -1;
    for (const [r, t] of S.known) if (t > bt) { best = r; bt = t; }
    return bt > 0 ? best : '';
  }

  // ---------------------------------------------------------------- state

  async function refreshState() {
    try {
      const st = await getJSON('/api/state');
      S.state = st;
      renderRouteTable(st);
      renderCells(st);
      renderRecorder(st);
      showError(st.error ? 'state: ' + st.error : '');
    } catch (err) {
      showError('state: ' + err.message);
    } finally {
      setTimeout(refreshState, STATE_EVERY_MS);
    }
  }

  function hostnamesByProcess(st) {
    const m = new Map();
    for (const d of st.desired_lrps || []) {
      const hosts = ((d.routes && d.routes['cf-router']) || []).flatMap((r) => r.hostnames || []);
      m.set(d.process_guid, { hosts, instances: d.instances });
    }
    return m;
  }

  function renderRouteTable(st) {
    const routes = st.routes || {};
    const names = Object.keys(routes).sort();
    $('#routes-count').textContent = names.length ? `${names.length} route${names.length === 1 ? '' : 's'}` : '';
    const root = $('#route-table');
    if (!names.length) { root.replaceChildren(h('p', { class: 'empty', text: 'No routes in the router yet.' })); return; }
    for (const n of names) if (!S.known.has(n)) learnRoute(n, 0);
    const table = h('ul', { class: 'rt' }, names.map((n) => h('li', {
      'data-route': n, class: n === S.route ? 'current' : '', tabindex: 0, role: 'button',
      'aria-label': `${n}: ${(routes[n] || []).length} endpoint(s); show its journey`,
      onclick: () => pick(n), onkeydown: (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(n); } },
    },
    h('div', { class: 'rname mono', text: n }),
    (routes[n] || []).map((ep) => h('div', { class: 'ep', 'data-address': ep.address },
      h('span', { class: 'arrow', 'aria-hidden': 'true', text: '→' }),
      h('span', { class: 'mono addr', text: ep.address }),
      ep.tls ? h('span', { class: 'tag tls', text: 'TLS' }) : h('span', { class: 'tag', text: 'plain' }),
      ep.server_cert_domain_san ? h('span', { class: 'tag mono', title: `SAN ${ep.server_cert_domain_san}`, text: `SAN ${short(ep.server_cert_domain_san)}` }) : null,
      ep.ttl ? h('span', { class: 'tag', text: `ttl ${ep.ttl}s` }) : null,
      ep.load_balancing_algorithm ? h('span', { class: 'tag', text: ep.load_balancing_algorithm }) : null,
    )),
    )));
    root.replaceChildren(table);
  }

  function highlightRouteTable() {
    document.querySelectorAll('#route-table [data-route]').forEach((tr) => tr.classList.toggle('current', tr.dataset.route === S.route));
  }

  function renderCells(st) {
    const cells = st.cells || [];
    const lrps = st.actual_lrps || [];
    const names = hostnamesByProcess(st);
    const title = document.getElementById('cell-title');
    if (title) title.textContent = cells.length ? `Diego cell${cells.length > 1 ? 's' : ''}: ${cells.map((c) => c.cell_id).join(', ')}` : 'Diego cell';
    $('#cells-count').textContent = `${cells.length} cell${cells.length === 1 ? '' : 's'}, ${lrps.length} ActualLRP${lrps.length === 1 ? '' : 's'}`;
    const root = $('#cells');
    const byCell = new Map(cells.map((c) => [c.cell_id, []]));
    const unplaced = [];
    for (const l of lrps) {
      if (l.cell_id && byCell.has(l.cell_id)) byCell.get(l.cell_id).push(l);
      else if (l.cell_id) byCell.set(l.cell_id, [l]);
      else unplaced.push(l);
    }
    const cards = [];
    for (const [id, list] of byCell) {
      const c = cells.find((x) => x.cell_id === id) || { cell_id: id };
      list.sort((a, b) => (a.process_guid || '').localeCompare(b.process_guid || '') || a.index - b.index);
      cards.push(h('div', { class: 'cell', 'data-cell': id },
        h('div', { class: 'cell-head' },
          h('strong', { text: id }),
          c.address ? h('span', { class: 'mono muted', text: `ip ${c.address}` }) : null,
          c.capacity ? h('span', { class: 'muted', text: `${c.capacity.memory_mb} MB, ${c.capacity.containers} containers` }) : null,
        ),
        list.length ? h('ul', { class: 'lrps' }, list.map((l) => lrpItem(l, names))) : h('p', { class: 'empty', text: 'no containers' })));
    }
    if (unplaced.length) {
      cards.push(h('div', { class: 'cell unplaced' }, h('div', { class: 'cell-head' }, h('strong', { text: 'not placed yet' })),
        h('ul', { class: 'lrps' }, unplaced.map((l) => lrpItem(l, names)))));
    }
    root.replaceChildren(...(cards.length ? cards : [h('p', { class: 'empty', text: 'No cells have reported yet.' })]));
  }

  function lrpItem(l, names) {
    const n = names.get(l.process_guid);
    const label = n && n.hosts.length ? n.hosts.join(', ') : short(l.process_guid);
    const mine = S.route && n && n.hosts.includes(S.route);
    return h('li', { class: `lrp${mine ? ' mine' : ''}`, 'data-instance-guid': l.instance_guid || null, 'data-state': l.state,
      'data-process': l.process_guid },
    h('div', { class: 'lrp-head' },
      h('span', { class: `state s-${(l.state || '').toLowerCase()}`, text: l.state }),
      h('span', { class: 'mono', text: `${label} #${l.index}` }),
      l.instance_guid ? h('span', { class: 'mono muted', title: l.instance_guid, text: `instance ${short(l.instance_guid)}` }) : null),
    h('div', { class: 'lrp-net mono' },
      l.address ? h('span', {}, h('span', { class: 'k', text: 'address ' }), l.address) : null,
      l.instance_address ? h('span', {}, h('span', { class: 'k', text: 'instance ' }), l.instance_address) : null,
      (l.ports || []).map((p) => h('span', {}, h('span', { class: 'k', text: 'ports ' }), fmtPort(p))),
      l.placement_error ? h('span', { class: 'err', text: l.placement_error }) : null,
      l.crash_reason ? h('span', { class: 'err', text: `crashed ${l.crash_count}×: ${l.crash_reason}` }) : null,
    ));
  }

  function renderRecorder(st) {
    const r = st.recorder || {};
    $('#recorder').textContent = `recorder: ${r.events ?? 0} of ${r.capacity ?? 0} events held` +
      (r.dropped ? `, ${r.dropped} dropped by emitters` : '') + (r.streams !== undefined ? `, ${r.streams} stream(s)` : '');
  }

  function pick(route) {
    S.follow = false;
    $('#follow').checked = false;
    if (route !== S.route) selectRoute(route);
  }

  // ---------------------------------------------------------------- start

  async function start() {
    drawDiagram();
    renderSteps();
    $('#route-picker').addEventListener('change', (ev) => pick(ev.target.value));
    $('#follow').addEventListener('change', (ev) => {
      S.follow = ev.target.checked;
      const r = latestMapped();
      if (S.follow && r && r !== S.route) {
        selectRoute(r);
        return;
      }
      const u = new URL(location.href);
      if (S.follow || !S.route) u.searchParams.delete('route'); else u.searchParams.set('route', S.route);
      history.replaceState(null, '', u);
    });
    $('#replay').addEventListener('click', replay);

    try {
      const steps = await getJSON('/api/steps');
      if (Array.isArray(steps) && steps.length) FLOW = steps;
    } catch (err) {
      showError('steps: ' + err.message);
    }
    drawDiagram();
    openAllStream();
    try {
      const all = await getJSON('/api/events?limit=5000');
      for (const e of all || []) {
        if (e.step === 'route-mapped' && e.route) learnRoute(e.route, micros(e.time));
      }
    } catch (err) {
      showError('events: ' + err.message);
    }
    const want = new URL(location.href).searchParams.get('route');
    if (want) {
      S.follow = false;
      $('#follow').checked = false;
      selectRoute(want.toLowerCase(), { keepURL: true });
    } else if (!S.route) {
      selectRoute(latestMapped());
    }
    refreshState();
  }

  start();
})();
