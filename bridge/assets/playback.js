// fleetmq map: history playback. Pick a vehicle and a time span; the page fetches
// /api/v1/vehicles/{id}/history, draws the track, and replays it with a slider (play/pause).
// Draws through the hooks map.js exposes (window.__fleetmqMap); no third-party code.
'use strict';

(() => {
  const map = window.__fleetmqMap;
  if (!map) return;
  const $ = id => document.getElementById(id);
  const vehicleEl = $('pb-vehicle');
  const fromEl = $('pb-from');
  const toEl = $('pb-to');
  const loadEl = $('pb-load');
  const playEl = $('pb-play');
  const sliderEl = $('pb-slider');
  const infoEl = $('pb-info');

  // What the page shows, for people and for tests: points loaded, index, marker position.
  const state = { vehicle: null, points: [], index: 0, playing: false, source: null, marker: null };
  window.__fleetmq.playback = state;
  let track = [];      // projected points
  let timer = null;

  // datetime-local values in local time.
  function localValue(ms) {
    const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 16);
  }
  const now = Date.now();
  fromEl.value = localValue(now - 3600 * 1000);
  toEl.value = localValue(now + 60 * 1000);

  function refreshVehicles() {
    const ids = [...map.vehicles.keys()].sort();
    const have = [...vehicleEl.options].map(o => o.value);
    if (ids.length === have.length && ids.every((v, i) => v === have[i])) return;
    const keep = vehicleEl.value;
    vehicleEl.replaceChildren(...ids.map(id => map.el('option', { value: id }, id)));
    if (ids.includes(keep)) vehicleEl.value = keep;
  }
  setInterval(refreshVehicles, 1000);

  function show(i) {
    if (track.length === 0) return;
    state.index = Math.max(0, Math.min(track.length - 1, i));
    sliderEl.value = String(state.index);
    const p = state.points[state.index];
    state.marker = { lat: p.lat, lon: p.lon, ts: p.ts };
    const speed = isFinite(p.speed) ? ' · ' + (p.speed * 3.6).toFixed(0) + ' km/h' : '';
    const off = p.on_route === false ? ' · off route' : '';
    infoEl.textContent = map.fmtTime(p.ts) + ' (' + (state.index + 1) + '/' + track.length + ')' + speed + off;
  }

  function stop() {
    if (timer) clearInterval(timer);
    timer = null;
    state.playing = false;
    playEl.textContent = '▶';
  }

  function play() {
    if (track.length < 2) return;
    if (state.index >= track.length - 1) show(0);
    state.playing = true;
    playEl.textContent = '❚❚';
    // About 20 s for a whole track, at least 4 steps a second.
    const step = Math.max(1, Math.ceil(track.length / 80));
    timer = setInterval(() => {
      if (state.index >= track.length - 1) { stop(); return; }
      show(state.index + step);
    }, 250);
  }

  async function load() {
    stop();
    const id = vehicleEl.value;
    if (!id) { infoEl.textContent = 'no vehicle to replay yet'; return; }
    const from = new Date(fromEl.value).getTime();
    const to = new Date(toEl.value).getTime();
    const q = new URLSearchParams({ from: String(from), to: String(to), limit: '10000' });
    const token = map.token();
    if (token) q.set('token', token);
    infoEl.textContent = 'loading…';
    let body;
    try {
      const r = await fetch('/api/v1/vehicles/' + encodeURIComponent(id) + '/history?' + q);
      body = await r.json();
      if (!r.ok) { infoEl.textContent = (body.error && body.error.message) || ('HTTP ' + r.status); return; }
    } catch (e) {
      infoEl.textContent = 'history unavailable';
      return;
    }
    state.vehicle = id;
    state.source = body.source;
    state.points = (body.positions || []).filter(p => isFinite(p.lat) && isFinite(p.lon));
    track = state.points.map(p => map.project(p.lon, p.lat));
    sliderEl.max = String(Math.max(0, track.length - 1));
    sliderEl.disabled = track.length === 0;
    playEl.disabled = track.length < 2;
    if (track.length === 0) { infoEl.textContent = 'no positions in that span (' + body.source + ')'; state.marker = null; return; }
    map.fitTo(track);
    show(0);
    infoEl.textContent += ' · from ' + body.source;
  }

  map.overlays.push(ctx => {
    if (track.length === 0) return;
    ctx.save();
    ctx.lineJoin = 'round';
    ctx.lineCap = 'round';
    ctx.beginPath();
    track.forEach((p, i) => { const s = map.toScreen(p); if (i) ctx.lineTo(s.x, s.y); else ctx.moveTo(s.x, s.y); });
    ctx.strokeStyle = 'rgba(29,39,51,0.35)';
    ctx.lineWidth = 3;
    ctx.stroke();
    ctx.beginPath();
    for (let i = 0; i <= state.index; i++) { const s = map.toScreen(track[i]); if (i) ctx.lineTo(s.x, s.y); else ctx.moveTo(s.x, s.y); }
    ctx.strokeStyle = '#6a1b9a';
    ctx.lineWidth = 4;
    ctx.stroke();
    const m = map.toScreen(track[state.index]);
    ctx.beginPath();
    ctx.arc(m.x, m.y, 8, 0, 2 * Math.PI);
    ctx.fillStyle = '#6a1b9a';
    ctx.fill();
    ctx.lineWidth = 2.5;
    ctx.strokeStyle = '#fff';
    ctx.stroke();
    ctx.restore();
    state.screen = { x: m.x, y: m.y };
  });

  loadEl.addEventListener('click', load);
  playEl.addEventListener('click', () => (state.playing ? stop() : play()));
  sliderEl.addEventListener('input', () => { stop(); show(Number(sliderEl.value)); });
})();
