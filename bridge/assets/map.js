// fleetmq live map: routes, stops, geofences and vehicles on a Canvas in Web-Mercator, fed by /ws
// like any other client. No third-party code; optional raster tiles only when configured.
'use strict';

(() => {
  const TILE = 256;
  const MAX_ZOOM = 20;
  const MIN_ZOOM = 1;
  const MAX_EVENTS = 200;
  // Route colours: none of them is a vehicle status colour (blue, orange, red, grey).
  const PALETTE = ['#43a047', '#8e24aa', '#00897b', '#3949ab', '#6d4c41', '#d81b60', '#00acc1', '#7cb342', '#5e35b1', '#546e7a'];

  const canvas = document.getElementById('map');
  const ctx = canvas.getContext('2d');
  const statusEl = document.getElementById('status');
  const countsEl = document.getElementById('counts');
  const detailsEl = document.getElementById('details');
  const eventsEl = document.getElementById('events');
  const eventCountEl = document.getElementById('event-count');
  const attribEl = document.getElementById('attrib');

  const view = { x: 0.5, y: 0.5, zoom: 2, w: 0, h: 0, dpr: 1 };
  const routes = [];   // {id, name, color, lines: [[{x,y}...]...]}
  const stops = [];    // {id, name, p}
  const fences = [];   // {id, name, rings: [[{x,y}...]...]}
  const routeColors = new Map();
  const vehicles = new Map(); // id -> {s: state, from, to, t0, dur, last}
  let selected = null;
  let fitted = false;
  let frames = 0;
  let eventCount = 0;
  let tileUrl = null;
  const tiles = new Map();
  // Tiles that loaded or failed; with none loaded after a few errors or TILE_GIVE_UP_MS the
  // page falls back to the grid (offline, blocked or a wrong --map-tiles URL).
  const tileStats = { mode: 'grid', loaded: 0, failed: 0, drawn: 0, since: 0 };
  const TILE_GIVE_UP_MS = 8000;

  window.__fleetmq = { vehicles: 0, frames: 0, connected: false, routes: 0, events: 0, tiles: tileStats };

  // ---- projection (spherical Web-Mercator, normalised to [0,1] at zoom 0) ----
  const MAX_LAT = 85.05112878;
  function project(lon, lat) {
    const la = Math.max(-MAX_LAT, Math.min(MAX_LAT, lat)) * Math.PI / 180;
    const s = Math.sin(la);
    return { x: (lon + 180) / 360, y: 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI) };
  }
  function unprojectLat(y) {
    return Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180 / Math.PI;
  }
  function scale() { return TILE * Math.pow(2, view.zoom); }
  function toScreen(p) {
    const k = scale();
    return { x: (p.x - view.x) * k + view.w / 2, y: (p.y - view.y) * k + view.h / 2 };
  }
  function fromScreen(sx, sy) {
    const k = scale();
    return { x: (sx - view.w / 2) / k + view.x, y: (sy - view.h / 2) / k + view.y };
  }

  function resize() {
    const r = canvas.getBoundingClientRect();
    view.dpr = window.devicePixelRatio || 1;
    view.w = Math.max(1, r.width);
    view.h = Math.max(1, r.height);
    canvas.width = Math.round(view.w * view.dpr);
    canvas.height = Math.round(view.h * view.dpr);
  }

  function fitTo(points) {
    if (points.length === 0) return false;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const p of points) {
      x0 = Math.min(x0, p.x); y0 = Math.min(y0, p.y); x1 = Math.max(x1, p.x); y1 = Math.max(y1, p.y);
    }
    const dx = Math.max(x1 - x0, 1e-7), dy = Math.max(y1 - y0, 1e-7);
    const z = Math.log2(Math.min((view.w * 0.85) / (dx * TILE), (view.h * 0.85) / (dy * TILE)));
    view.zoom = Math.max(MIN_ZOOM, Math.min(16, z));
    view.x = (x0 + x1) / 2;
    view.y = (y0 + y1) / 2;
    return true;
  }

  function routePoints() {
    const pts = [];
    for (const r of routes) for (const line of r.lines) for (const p of line) pts.push(p);
    for (const s of stops) pts.push(s.p);
    return pts;
  }

  function fit() {
    if (fitTo(routePoints())) { fitted = true; return; }
    const pts = [];
    for (const v of vehicles.values()) pts.push(v.to);
    if (fitTo(pts)) fitted = true;
  }

  // Routes without a colour of their own get the palette in order, skipping colours already taken.
  let paletteNext = 0;
  function colorFor(routeId) {
    const key = routeId == null ? '' : String(routeId);
    let c = routeColors.get(key);
    if (!c) {
      const taken = new Set(routeColors.values());
      c = PALETTE[paletteNext % PALETTE.length];
      for (let i = 0; i < PALETTE.length && taken.has(c); i++) c = PALETTE[++paletteNext % PALETTE.length];
      paletteNext++;
      routeColors.set(key, c);
    }
    return c;
  }

  // ---- GeoJSON ----
  function projLine(coords) {
    return (coords || []).filter(c => Array.isArray(c) && c.length >= 2).map(c => project(+c[0], +c[1]));
  }

  function loadRoutes(fc) {
    const features = (fc && fc.features) || [];
    // Explicit colours first, so generated ones avoid them.
    for (const f of features) {
      const props = f.properties || {};
      const t = (f.geometry || {}).type;
      if (t !== 'LineString' && t !== 'MultiLineString') continue;
      const id = props.route_id ?? props.route ?? props.id ?? f.id;
      let color = typeof props.color === 'string' ? props.color
        : typeof props.route_color === 'string' ? props.route_color : null;
      if (color && /^[0-9a-fA-F]{6}$/.test(color)) color = '#' + color;
      if (id != null && color && /^#[0-9a-fA-F]{6}$/.test(color)) routeColors.set(String(id), color);
    }
    for (const f of features) {
      const g = f.geometry || {};
      const props = f.properties || {};
      const routeId = props.route_id ?? props.route ?? props.id ?? f.id;
      const name = props.name || props.short_name || props.long_name || '';
      if (g.type === 'LineString' || g.type === 'MultiLineString') {
        const lines = g.type === 'LineString' ? [projLine(g.coordinates)] : (g.coordinates || []).map(projLine);
        routes.push({ id: routeId, name, color: colorFor(routeId), lines });
      } else if (g.type === 'Point' && Array.isArray(g.coordinates)) {
        stops.push({ id: props.stop_id ?? props.id ?? f.id, name, p: project(+g.coordinates[0], +g.coordinates[1]) });
      } else if (g.type === 'Polygon' || g.type === 'MultiPolygon') {
        const polys = g.type === 'Polygon' ? [g.coordinates] : (g.coordinates || []);
        const rings = [];
        for (const poly of polys) for (const ring of poly || []) rings.push(projLine(ring));
        fences.push({ id: props.geofence_id ?? props.id ?? f.id, name, rings });
      }
    }
    window.__fleetmq.routes = routes.length;
  }

  // ---- vehicles ----
  function displayPos(v, now) {
    const t = v.dur > 0 ? Math.min(1, (now - v.t0) / v.dur) : 1;
    const e = t < 1 ? t * (2 - t) : 1; // ease-out
    return { x: v.from.x + (v.to.x - v.from.x) * e, y: v.from.y + (v.to.y - v.from.y) * e };
  }

  function upsert(s, animate) {
    if (!s || typeof s.vehicle !== 'string' || !isFinite(s.lat) || !isFinite(s.lon)) return;
    const now = performance.now();
    const to = project(s.lon, s.lat);
    const v = vehicles.get(s.vehicle);
    if (v && animate) {
      v.from = displayPos(v, now);
      v.to = to;
      v.t0 = now;
      v.dur = Math.max(250, Math.min(2000, now - v.last));
      v.last = now;
      v.s = s;
    } else {
      vehicles.set(s.vehicle, { s, from: to, to, t0: now, dur: 0, last: now });
    }
    if (selected === s.vehicle) showDetails();
  }

  function isOffRoute(s) { return s.on_route === false; }

  function vehicleColor(s) {
    if (s.status === 'offline') return '#9e9e9e';
    if (isOffRoute(s)) return '#e53935';
    if (s.status === 'stopped') return '#fb8c00';
    return '#1e88e5';
  }

  // ---- side panel ----
  function fmtTime(ms) {
    if (!isFinite(ms)) return '—';
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  function fmtDist(m) {
    if (!isFinite(m)) return '—';
    return m >= 1000 ? (m / 1000).toFixed(1) + ' km' : Math.round(m) + ' m';
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }

  function showDetails() {
    detailsEl.replaceChildren(el('h2', null, 'Vehicle'));
    const v = selected && vehicles.get(selected);
    if (!v) {
      detailsEl.appendChild(el('p', { class: 'hint' }, 'Click a vehicle to see its state and next stop.'));
      return;
    }
    const s = v.s;
    const title = el('div', { class: 'title' }, s.vehicle + ' ');
    const status = isOffRoute(s) ? 'off route' : s.status;
    title.appendChild(el('span', { class: 'badge ' + (isOffRoute(s) ? 'off-route' : s.status) }, status));
    detailsEl.appendChild(title);
    const dl = el('dl');
    const row = (k, val) => { dl.appendChild(el('dt', null, k)); dl.appendChild(el('dd', null, val)); };
    row('Route', s.route ?? '—');
    row('Trip', s.trip ?? '—');
    row('Speed', (isFinite(s.speed) ? (s.speed * 3.6).toFixed(0) + ' km/h' : '—')
      + (isFinite(s.heading) ? ' · ' + Math.round(s.heading) + '°' : ''));
    row('Position', s.lat.toFixed(5) + ', ' + s.lon.toFixed(5));
    // Reported by phones (OsmAnd / Traccar Client) and any device that sends them.
    if (isFinite(s.altitude)) row('Altitude', Math.round(s.altitude) + ' m');
    if (isFinite(s.battery)) row('Battery', Math.round(s.battery) + ' %');
    if (s.off_route_m != null) row('Off route', fmtDist(s.off_route_m));
    if (s.delay_s != null && isFinite(s.delay_s)) {
      const dd = el('dd', { class: 'delay ' + delayClass(s.delay_s) }, fmtDelay(s.delay_s));
      dl.appendChild(el('dt', null, 'Delay'));
      dl.appendChild(dd);
    }
    row('Fix time', fmtTime(s.ts));
    detailsEl.appendChild(dl);
    // The next stops with ETAs (GET /api/v1/vehicles/{id}/stops); the state's next stop until
    // the list has come.
    const list = stopsCache.vehicle === s.vehicle && stopsCache.stops
      ? stopsCache.stops : (s.next_stop ? [s.next_stop] : []);
    detailsEl.appendChild(el('h3', null, 'Next stops'));
    if (!list.length) {
      detailsEl.appendChild(el('p', { class: 'hint' }, '—'));
    } else {
      const ol = el('ol', { class: 'stops' });
      for (const ns of list) {
        const li = el('li');
        li.appendChild(el('span', { class: 'name' }, ns.name || ns.id));
        li.appendChild(el('span', { class: 'dist' }, fmtDist(ns.distance_m)));
        let eta = '—';
        if (ns.eta != null) {
          const mins = Math.round((ns.eta - Date.now()) / 60000);
          eta = fmtClock(ns.eta) + (mins >= 1 ? ' · ' + mins + ' min' : ' · due');
        }
        li.appendChild(el('span', { class: 'eta' }, eta));
        if (ns.delay_s != null && isFinite(ns.delay_s)) {
          li.appendChild(el('span', { class: 'delay ' + delayClass(ns.delay_s) }, fmtDelay(ns.delay_s, true)));
        }
        ol.appendChild(li);
      }
      detailsEl.appendChild(ol);
    }
    window.__fleetmq.stops = list.length;
    refreshStops(s.vehicle);
  }

  // ---- next stops of the selected vehicle ----
  // Fetched when a vehicle is selected and then at most every STOPS_REFRESH_MS while its
  // panel is open; one request at a time.
  const STOPS_REFRESH_MS = 5000;
  const stopsCache = { vehicle: null, at: 0, stops: null, pending: false };
  function refreshStops(vehicle) {
    const now = Date.now();
    if (stopsCache.pending || (stopsCache.vehicle === vehicle && now - stopsCache.at < STOPS_REFRESH_MS)) return;
    if (stopsCache.vehicle !== vehicle) stopsCache.stops = null;
    stopsCache.pending = true;
    stopsCache.vehicle = vehicle;
    const token = new URLSearchParams(location.search).get('token');
    const url = '/api/v1/vehicles/' + encodeURIComponent(vehicle) + '/stops?limit=5'
      + (token ? '&token=' + encodeURIComponent(token) : '');
    fetch(url).then(r => r.ok ? r.json() : null).catch(() => null).then(j => {
      stopsCache.pending = false;
      stopsCache.at = Date.now();
      if (stopsCache.vehicle !== vehicle) return;
      stopsCache.stops = j && Array.isArray(j.stops) ? j.stops : null;
      if (selected === vehicle) showDetails();
    });
  }
  function delayClass(d) { return d >= 60 ? 'late' : d <= -60 ? 'early' : 'ontime'; }
  function fmtDelay(d, short) {
    const m = Math.round(d / 60);
    if (m === 0) return 'on time';
    if (short) return (m > 0 ? '+' : '−') + Math.abs(m) + ' min';
    return m > 0 ? m + ' min late' : -m + ' min early';
  }
  function fmtClock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function addEvent(sub, e) {
    if (!e || typeof e.kind !== 'string') return;
    eventCount++;
    eventCountEl.textContent = '(' + eventCount + ')';
    const li = el('li', { class: e.kind });
    li.appendChild(el('time', null, fmtTime(e.ts)));
    li.appendChild(el('span', { class: 'kind' }, e.kind.replace(/_/g, ' ')));
    let detail = e.vehicle;
    if (e.stop_name || e.stop_id) detail += ' @ ' + (e.stop_name || e.stop_id);
    if (e.geofence_id) detail += ' · ' + e.geofence_id;
    if (isFinite(e.off_route_m)) detail += ' · ' + fmtDist(e.off_route_m) + ' off';
    if (e.message) detail += ' · ' + e.message;
    li.appendChild(document.createTextNode(detail));
    li.addEventListener('click', () => {
      selected = e.vehicle;
      const v = vehicles.get(e.vehicle);
      if (v) { view.x = v.to.x; view.y = v.to.y; view.zoom = Math.max(view.zoom, 14); }
      showDetails();
    });
    eventsEl.prepend(li);
    window.__fleetmq.events = eventCount;
    while (eventsEl.children.length > MAX_EVENTS) eventsEl.lastElementChild.remove();
  }

  // ---- drawing ----
  function drawTiles() {
    if (!tileUrl) return;
    const z = Math.max(0, Math.min(19, Math.round(view.zoom)));
    const n = Math.pow(2, z);
    const size = TILE * Math.pow(2, view.zoom - z);
    const tl = fromScreen(0, 0), br = fromScreen(view.w, view.h);
    const tx0 = Math.floor(tl.x * n), tx1 = Math.floor(br.x * n);
    const ty0 = Math.max(0, Math.floor(tl.y * n)), ty1 = Math.min(n - 1, Math.floor(br.y * n));
    for (let ty = ty0; ty <= ty1; ty++) {
      for (let tx = tx0; tx <= tx1; tx++) {
        const wx = ((tx % n) + n) % n;
        const key = z + '/' + wx + '/' + ty;
        let img = tiles.get(key);
        if (!img) {
          img = new Image();
          // CORS keeps the canvas readable (OpenStreetMap and most tile servers allow it).
          img.crossOrigin = 'anonymous';
          img.onload = () => { tileStats.loaded++; };
          img.onerror = () => { tileStats.failed++; };
          img.src = tileUrl.replace('{z}', z).replace('{x}', wx).replace('{y}', ty);
          tiles.set(key, img);
          if (tiles.size > 400) tiles.delete(tiles.keys().next().value);
        }
        if (img.complete && img.naturalWidth > 0) {
          const p = toScreen({ x: tx / n, y: ty / n });
          ctx.drawImage(img, Math.floor(p.x), Math.floor(p.y), Math.ceil(size) + 1, Math.ceil(size) + 1);
          tileStats.drawn++;
        }
      }
    }
  }

  function tilesGiveUp(now) {
    if (!tileUrl || tileStats.loaded > 0) return;
    if (tileStats.failed >= 4 || now - tileStats.since > TILE_GIVE_UP_MS) {
      tileUrl = null;
      tileStats.mode = 'grid';
      attribEl.textContent = 'map tiles unavailable: grid';
    }
  }

  function drawGraticule() {
    // A light lon/lat grid so panning is visible without tiles.
    const tl = fromScreen(0, 0), br = fromScreen(view.w, view.h);
    const lonSpan = (br.x - tl.x) * 360;
    const steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 45];
    const step = steps.find(s => lonSpan / s <= 12) || 90;
    ctx.strokeStyle = 'rgba(80,100,120,0.12)';
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let lon = Math.ceil((tl.x * 360 - 180) / step) * step; lon <= br.x * 360 - 180; lon += step) {
      const x = toScreen(project(lon, 0)).x;
      ctx.moveTo(x, 0); ctx.lineTo(x, view.h);
    }
    const latTop = unprojectLat(Math.max(0, tl.y)), latBottom = unprojectLat(Math.min(1, br.y));
    for (let lat = Math.ceil(latBottom / step) * step; lat <= latTop; lat += step) {
      const y = toScreen(project(0, lat)).y;
      ctx.moveTo(0, y); ctx.lineTo(view.w, y);
    }
    ctx.stroke();
  }

  function pathLine(line) {
    let first = true;
    for (const p of line) {
      const s = toScreen(p);
      if (first) { ctx.moveTo(s.x, s.y); first = false; } else ctx.lineTo(s.x, s.y);
    }
  }

  function drawRoutes() {
    for (const f of fences) {
      ctx.beginPath();
      for (const ring of f.rings) { pathLine(ring); ctx.closePath(); }
      ctx.fillStyle = 'rgba(255,193,7,0.15)';
      ctx.strokeStyle = 'rgba(255,160,0,0.8)';
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 1.5;
      ctx.fill('evenodd');
      ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.lineJoin = 'round';
    ctx.lineCap = 'round';
    const w = Math.max(2.5, Math.min(7, view.zoom - 8));
    for (const r of routes) {
      ctx.beginPath();
      for (const line of r.lines) pathLine(line);
      ctx.strokeStyle = 'rgba(255,255,255,0.9)';
      ctx.lineWidth = w + 3;
      ctx.stroke();
      ctx.strokeStyle = r.color;
      ctx.globalAlpha = 0.75;
      ctx.lineWidth = w;
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    if (view.zoom >= 10) {
      const rad = view.zoom >= 15 ? 5 : view.zoom >= 13 ? 3.5 : 2;
      ctx.fillStyle = '#fff';
      ctx.strokeStyle = view.zoom >= 13 ? '#37474f' : '#78909c';
      ctx.lineWidth = view.zoom >= 13 ? 1.5 : 1;
      for (const s of stops) {
        const p = toScreen(s.p);
        if (p.x < -10 || p.y < -10 || p.x > view.w + 10 || p.y > view.h + 10) continue;
        ctx.beginPath();
        ctx.arc(p.x, p.y, rad, 0, 2 * Math.PI);
        ctx.fill();
        ctx.stroke();
      }
      if (view.zoom >= 16) {
        ctx.fillStyle = '#37474f';
        ctx.font = '11px system-ui, sans-serif';
        for (const s of stops) {
          const p = toScreen(s.p);
          ctx.fillText(s.name, p.x + 6, p.y - 6);
        }
      }
    }
  }

  function drawVehicles(now) {
    let drawn = 0;
    const pulse = 0.5 + 0.5 * Math.sin(now / 250);
    // Three passes instead of a sort per frame: off-route vehicles and the selected one on top.
    const layer = v => (v.s.vehicle === selected ? 2 : isOffRoute(v.s) ? 1 : 0);
    for (let pass = 0; pass < 3; pass++) for (const v of vehicles.values()) {
      if (layer(v) !== pass) continue;
      const p = toScreen(displayPos(v, now));
      if (p.x < -20 || p.y < -20 || p.x > view.w + 20 || p.y > view.h + 20) continue;
      const s = v.s;
      const color = vehicleColor(s);
      if (isOffRoute(s) && s.status !== 'offline') {
        ctx.beginPath();
        ctx.arc(p.x, p.y, 11 + 5 * pulse, 0, 2 * Math.PI);
        ctx.fillStyle = 'rgba(229,57,53,' + (0.15 + 0.2 * (1 - pulse)) + ')';
        ctx.fill();
      }
      if (isFinite(s.heading) && s.status !== 'offline') {
        const a = s.heading * Math.PI / 180;
        ctx.beginPath();
        ctx.moveTo(p.x + Math.sin(a) * 15, p.y - Math.cos(a) * 15);
        ctx.lineTo(p.x + Math.sin(a + 0.6) * 8, p.y - Math.cos(a + 0.6) * 8);
        ctx.lineTo(p.x + Math.sin(a - 0.6) * 8, p.y - Math.cos(a - 0.6) * 8);
        ctx.closePath();
        ctx.fillStyle = color;
        ctx.fill();
      }
      ctx.beginPath();
      ctx.arc(p.x, p.y, 7, 0, 2 * Math.PI);
      ctx.fillStyle = color;
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = '#fff';
      ctx.stroke();
      if (s.vehicle === selected) {
        ctx.beginPath();
        ctx.arc(p.x, p.y, 12, 0, 2 * Math.PI);
        ctx.strokeStyle = '#1d2733';
        ctx.lineWidth = 2;
        ctx.stroke();
      }
      let lx = p.x + 10;
      ctx.font = '600 11px system-ui, sans-serif';
      ctx.lineWidth = 3;
      ctx.strokeStyle = 'rgba(255,255,255,0.9)';
      if (view.zoom >= 14 || s.vehicle === selected) {
        ctx.strokeText(s.vehicle, lx, p.y + 4);
        ctx.fillStyle = '#1d2733';
        ctx.fillText(s.vehicle, lx, p.y + 4);
        lx += ctx.measureText(s.vehicle).width + 4;
      }
      // A late bus says so at every zoom: lateness is what riders ask about first.
      if (s.status !== 'offline' && isFinite(s.delay_s) && s.delay_s >= 60) {
        const tag = '+' + Math.round(s.delay_s / 60) + ' min';
        ctx.strokeText(tag, lx, p.y + 4);
        ctx.fillStyle = '#c62828';
        ctx.fillText(tag, lx, p.y + 4);
      }
      drawn++;
    }
    return drawn;
  }

  function drawScale() {
    const lat = unprojectLat(view.y);
    const mpp = Math.cos(lat * Math.PI / 180) * 2 * Math.PI * 6378137 / scale();
    const nice = [1, 2, 5];
    let len = 1;
    for (let e = 0; e < 8; e++) for (const n of nice) { const m = n * Math.pow(10, e); if (m / mpp <= 120) len = m; }
    const px = len / mpp;
    const x = 12, y = view.h - 30;
    ctx.strokeStyle = '#37474f';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x, y - 5); ctx.lineTo(x, y); ctx.lineTo(x + px, y); ctx.lineTo(x + px, y - 5);
    ctx.stroke();
    ctx.fillStyle = '#37474f';
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillText(len >= 1000 ? len / 1000 + ' km' : len + ' m', x + 4, y - 7);
  }

  function frame(now) {
    if (canvas.width !== Math.round(canvas.getBoundingClientRect().width * (window.devicePixelRatio || 1))) resize();
    ctx.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
    ctx.fillStyle = '#e9eef2';
    ctx.fillRect(0, 0, view.w, view.h);
    tileStats.drawn = 0;
    tilesGiveUp(now);
    drawTiles();
    if (!tileUrl || tileStats.loaded === 0) drawGraticule();
    drawRoutes();
    const drawn = drawVehicles(now);
    for (const overlay of hooks.overlays) overlay(ctx, now);
    drawScale();
    frames++;
    window.__fleetmq.frames = frames;
    window.__fleetmq.vehicles = drawn;
    requestAnimationFrame(frame);
  }

  function updateCounts() {
    let off = 0, offline = 0;
    for (const v of vehicles.values()) {
      if (v.s.status === 'offline') offline++;
      else if (isOffRoute(v.s)) off++;
    }
    countsEl.textContent = vehicles.size + ' vehicles · ' + off + ' off route · ' + offline + ' offline';
  }

  // ---- interaction ----
  let drag = null;
  canvas.addEventListener('pointerdown', e => {
    canvas.setPointerCapture(e.pointerId);
    drag = { sx: e.clientX, sy: e.clientY, x: view.x, y: view.y, moved: false };
    canvas.classList.add('dragging');
  });
  canvas.addEventListener('pointermove', e => {
    if (!drag) return;
    const dx = e.clientX - drag.sx, dy = e.clientY - drag.sy;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    const k = scale();
    view.x = drag.x - dx / k;
    view.y = Math.max(0, Math.min(1, drag.y - dy / k));
  });
  canvas.addEventListener('pointerup', e => {
    canvas.classList.remove('dragging');
    const wasDrag = drag && drag.moved;
    drag = null;
    if (wasDrag) return;
    const r = canvas.getBoundingClientRect();
    const mx = e.clientX - r.left, my = e.clientY - r.top;
    const now = performance.now();
    let best = null, bestD = 14 * 14;
    for (const v of vehicles.values()) {
      const p = toScreen(displayPos(v, now));
      const d = (p.x - mx) ** 2 + (p.y - my) ** 2;
      if (d < bestD) { best = v.s.vehicle; bestD = d; }
    }
    selected = best;
    showDetails();
  });
  function zoomAt(mx, my, dz) {
    const before = fromScreen(mx, my);
    view.zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, view.zoom + dz));
    const after = fromScreen(mx, my);
    view.x += before.x - after.x;
    view.y += before.y - after.y;
  }
  canvas.addEventListener('wheel', e => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoomAt(e.clientX - r.left, e.clientY - r.top, -e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.002));
  }, { passive: false });
  canvas.addEventListener('dblclick', e => {
    const r = canvas.getBoundingClientRect();
    zoomAt(e.clientX - r.left, e.clientY - r.top, 1);
  });
  document.getElementById('zoom-in').addEventListener('click', () => zoomAt(view.w / 2, view.h / 2, 1));
  document.getElementById('zoom-out').addEventListener('click', () => zoomAt(view.w / 2, view.h / 2, -1));
  document.getElementById('fit').addEventListener('click', fit);
  window.addEventListener('resize', resize);

  // ---- hooks for playback.js (and other overlays) ----
  const hooks = {
    overlays: [],          // functions (ctx, now) drawn after the vehicles, every frame
    project, toScreen, view, vehicles, el, fmtTime,
    centerOn(p, zoom) { view.x = p.x; view.y = p.y; if (zoom) view.zoom = Math.max(view.zoom, zoom); },
    fitTo,
    token() { return new URLSearchParams(location.search).get('token'); },
  };
  window.__fleetmqMap = hooks;

  // ---- live feed ----
  let backoff = 500;
  function connect() {
    // A token in the page's URL (?token=...) is passed on, for brokers with authentication.
    const token = new URLSearchParams(location.search).get('token');
    const query = token ? '?token=' + encodeURIComponent(token) : '';
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' + query);
    ws.onopen = () => {
      backoff = 500;
      window.__fleetmq.connected = true;
      statusEl.textContent = 'live';
      statusEl.className = 'status on';
      // One frame per tick with every vehicle that moved, not one frame per vehicle.
      ws.send(JSON.stringify({ op: 'subscribe', id: 'all', bbox: [-180, -90, 180, 90], max_hz: 2, batch: true }));
      ws.send(JSON.stringify({ op: 'subscribe', id: 'events', events: true }));
    };
    ws.onmessage = m => {
      let msg;
      try { msg = JSON.parse(m.data); } catch (_) { return; }
      if (msg.type === 'snapshot' && msg.sub === 'all') {
        const seen = new Set();
        for (const s of msg.vehicles || []) { upsert(s, false); seen.add(s.vehicle); }
        for (const id of [...vehicles.keys()]) if (!seen.has(id)) vehicles.delete(id);
        if (!fitted) fit();
        updateCounts();
      } else if (msg.type === 'updates') {
        for (const s of msg.vehicles || []) upsert(s, true);
        if (!fitted) fit();
        updateCounts();
      } else if (msg.type === 'update') {
        upsert(msg.vehicle, true);
        if (!fitted) fit();
        updateCounts();
      } else if (msg.type === 'snapshot' && msg.sub === 'events') {
        // The last events (at most 50, oldest first), so the list is not empty on load.
        eventsEl.replaceChildren();
        eventCount = 0;
        for (const e of msg.events || []) addEvent(msg.sub, e);
      } else if (msg.type === 'event') {
        addEvent(msg.sub, msg.event);
      } else if (msg.type === 'error') {
        console.warn('fleetmq:', msg.code, msg.message);
      }
    };
    ws.onclose = () => {
      window.__fleetmq.connected = false;
      statusEl.textContent = 'reconnecting…';
      statusEl.className = 'status off';
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  async function start() {
    resize();
    try {
      const cfg = await (await fetch('/map/config.json')).json();
      if (typeof cfg.tile_url === 'string' && cfg.tile_url) {
        tileUrl = cfg.tile_url;
        tileStats.mode = 'tiles';
        tileStats.since = performance.now();
        if (cfg.attribution) {
          const a = el('a', { href: cfg.attribution_url || '#', target: '_blank', rel: 'noopener' }, cfg.attribution);
          attribEl.replaceChildren(a);
        }
      }
    } catch (_) { /* no config: no tiles */ }
    try {
      loadRoutes(await (await fetch('/api/v1/routes')).json());
    } catch (_) { /* no routes */ }
    fit();
    connect();
    requestAnimationFrame(frame);
  }
  start();
})();
