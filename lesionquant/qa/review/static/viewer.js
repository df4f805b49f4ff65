// lesionquant review page: scroll a scan's axial slices with its overlay and record a verdict.
// Slice index k is the array index (z increasing superior); the page counts slices from the
// top of the chest (1 = most superior), as a reader scrolls.
(function () {
  'use strict';
  var TOKEN = document.querySelector('meta[name="lq-token"]').content;
  var WINDOWS = { lung: 'lung W1500/L-600', mediastinum: 'mediastinum W400/L40' };
  var S = { scans: [], cur: -1, detail: null, k: 0, win: 'lung', overlay: true, opacity: 0.45 };
  var $ = function (id) { return document.getElementById(id); };

  function api(path, opts) {
    return fetch(path, opts).then(function (r) {
      return r.json().then(function (doc) {
        if (!r.ok) throw new Error(doc.error || r.statusText);
        return doc;
      });
    });
  }
  function fmt(v, d) { return v === null || v === undefined ? 'n/a' : v.toFixed(d); }
  function status(msg) { $('status').textContent = msg; }

  // Scans come grouped by patient, visits in order: a heading per patient, then one line
  // per visit with its day since baseline and study date.
  function renderList() {
    var ol = $('scans'); ol.textContent = '';
    var done = 0, patient;
    S.scans.forEach(function (s, i) {
      if (s.patient && s.patient !== patient) {
        patient = s.patient;
        var head = document.createElement('li'); head.className = 'patient';
        head.textContent = 'Patient ' + s.patient;
        ol.appendChild(head);
      }
      var li = document.createElement('li');
      li.dataset.id = s.id;
      if (i === S.cur) li.className = 'current';
      var name = document.createElement('span');
      var day = document.createElement('b'); day.className = 'day';
      day.textContent = s.day === null || s.day === undefined ? 'day ?' : 'day ' + s.day;
      name.appendChild(day);
      name.appendChild(document.createTextNode(' ' + s.id));
      name.title = s.id + (s.study_date ? ', study date ' + s.study_date : '');
      var right = document.createElement('span');
      var pct = document.createElement('span'); pct.className = 'pct';
      pct.textContent = fmt(s.numbers.lesion_pct, 1) + ' % ';
      var b = document.createElement('span');
      b.className = 'badge ' + (s.verdict || 'none');
      b.textContent = s.verdict || '\u2013';
      right.appendChild(pct); right.appendChild(b);
      li.appendChild(name); li.appendChild(right);
      li.addEventListener('click', function () { openScan(i); });
      ol.appendChild(li);
      if (s.verdict === 'accept' || s.verdict === 'reject') done++;
    });
    $('progress').textContent = done + ' / ' + S.scans.length + ' reviewed';
  }

  function renderFailed(failed) {
    var box = $('failed'); box.textContent = '';
    if (!failed || !failed.length) return;
    var h = document.createElement('h2'); h.textContent = 'Failed (' + failed.length + ')';
    box.appendChild(h);
    failed.forEach(function (row) {
      var p = document.createElement('p');
      p.textContent = (row.scan_id || '') + ': ' + (row.reason || Object.values(row).join(' '));
      box.appendChild(p);
    });
  }

  function renderSide() {
    var d = S.detail, box = $('numbers'); box.textContent = '';
    var h = document.createElement('h2'); h.textContent = 'Results'; box.appendChild(h);
    var grid = document.createElement('div'); grid.className = 'num-grid';
    [['lung_ml', 'lung mL', 0], ['lesion_pct', 'lesion %', 2], ['ggo_pct', 'GGO %', 2],
     ['consolidation_pct', 'consolidation %', 2], ['lesion_ml', 'lesion mL', 1]]
      .forEach(function (n) {
        var l = document.createElement('span'); l.textContent = n[1];
        var v = document.createElement('b'); v.textContent = fmt(d.numbers[n[0]], n[2]);
        grid.appendChild(l); grid.appendChild(v);
      });
    box.appendChild(grid);
    if (d.method) {
      var m = document.createElement('div'); m.textContent = 'method ' + d.method;
      box.appendChild(m);
    }
    var w = $('warnings'); w.textContent = '';
    if (d.warnings.length) {
      var hw = document.createElement('h2'); hw.textContent = 'Warnings'; w.appendChild(hw);
      var ul = document.createElement('ul');
      d.warnings.forEach(function (t) {
        var li = document.createElement('li'); li.textContent = t; ul.appendChild(li);
      });
      w.appendChild(ul);
    }
    renderVerdict(d.verdict);
  }

  function renderVerdict(v) {
    var b = $('verdict-badge');
    b.className = 'badge ' + (v ? v.verdict : 'none');
    b.textContent = v ? v.verdict : 'not reviewed';
    $('comment').value = v ? v.comment : '';
    $('verdict-time').textContent = v ? 'saved ' + v.time_utc + (v.reader ? ' by ' + v.reader : '') : '';
  }

  function layout() {
    var vol = S.detail && S.detail.volume;
    if (!vol) return;
    var stage = $('stage');
    var availW = stage.clientWidth - 120, availH = stage.clientHeight - 20;
    var physW = vol.cols * vol.spacing_mm[0], physH = vol.rows * vol.spacing_mm[1];
    var scale = Math.max(0.1, Math.min(availW / physW, availH / physH));
    var stack = $('stack');
    stack.style.width = Math.round(physW * scale) + 'px';
    stack.style.height = Math.round(physH * scale) + 'px';
    var prof = $('profile');
    prof.height = Math.round(physH * scale);
    prof.style.height = prof.height + 'px';
    drawProfile();
  }

  function drawProfile() {
    var vol = S.detail && S.detail.volume, c = $('profile');
    if (!vol) return;
    var ctx = c.getContext('2d'), n = vol.n_slices, H = c.height, W = c.width;
    ctx.fillStyle = '#000'; ctx.fillRect(0, 0, W, H);
    var max = 1;
    for (var i = 0; i < n; i++) max = Math.max(max, vol.ggo_voxels[i] + vol.consolidation_voxels[i]);
    var rowH = H / n;
    ctx.fillStyle = '#222';
    ctx.fillRect(0, (n - 1 - vol.lung_range[1]) * rowH, 4, (vol.lung_range[1] - vol.lung_range[0] + 1) * rowH);
    for (var k = 0; k < n; k++) {
      var y = (n - 1 - k) * rowH, g = vol.ggo_voxels[k] / max * (W - 8),
        cw = vol.consolidation_voxels[k] / max * (W - 8);
      ctx.fillStyle = '#E69F00'; ctx.fillRect(6, y, g, Math.max(1, rowH));
      ctx.fillStyle = '#0072B2'; ctx.fillRect(6 + g, y, cw, Math.max(1, rowH));
    }
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, (n - 1 - S.k) * rowH + rowH / 2 - 1, W, 2);
  }

  function sliceUrl(kind, k) {
    var base = '/api/scans/' + encodeURIComponent(S.detail.id) + '/' + kind + '/' + k + '.png';
    return kind === 'ct' ? base + '?w=' + S.win : base;
  }

  function prefetch(k) {
    var n = S.detail.volume.n_slices;
    [1, -1, 2, -2, 3, -3].forEach(function (d) {
      var j = k + d;
      if (j >= 0 && j < n) {
        new Image().src = sliceUrl('ct', j);
        if (S.overlay) new Image().src = sliceUrl('overlay', j);
      }
    });
  }

  function showSlice(k) {
    var vol = S.detail && S.detail.volume;
    if (!vol) return;
    S.k = Math.max(0, Math.min(vol.n_slices - 1, k));
    $('ct').src = sliceUrl('ct', S.k);
    $('overlay').src = sliceUrl('overlay', S.k);
    $('slice-index').textContent = String(vol.n_slices - S.k);
    $('stack').dataset.slice = String(S.k);
    $('slice-z').textContent = 'z ' + vol.z_mm[S.k].toFixed(1) + ' mm';
    drawProfile();
    prefetch(S.k);
  }

  function renderOverlayState() {
    var o = $('overlay');
    o.className = S.overlay ? '' : 'off';
    o.style.opacity = String(S.opacity);
    $('overlay-label').textContent = 'overlay ' + (S.overlay ? 'on' : 'off') + ', ' +
      Math.round(S.opacity * 100) + ' %';
    $('window-label').textContent = WINDOWS[S.win];
  }

  function openScan(i) {
    if (i < 0 || i >= S.scans.length) return;
    S.cur = i; renderList();
    var id = S.scans[i].id, sc = S.scans[i];
    $('scan-id').textContent = id;
    $('scan-visit').textContent = sc.patient ? 'patient ' + sc.patient + ' \u00b7 ' +
      (sc.day === null || sc.day === undefined ? 'day ?' : 'day ' + sc.day) +
      (sc.study_date ? ' (' + sc.study_date + ')' : '') : '';
    status('loading ' + id + '\u2026');
    return api('/api/scans/' + encodeURIComponent(id)).then(function (d) {
      if (S.scans[S.cur].id !== id) return;
      S.detail = d;
      renderSide();
      var ok = !!d.volume;
      $('stack').hidden = !ok; $('fallback').hidden = ok;
      $('profile').hidden = !ok || d.volume.n_slices < 3;
      if (ok) {
        $('slice-count').textContent = String(d.volume.n_slices);
        layout();
        showSlice(d.volume.start_slice);
        status('');
      } else {
        $('fallback-msg').textContent = 'CT not available: ' + d.error +
          (d.has_montage ? ' Showing the QA montage instead.' : '');
        if (d.has_montage) $('montage').src = '/api/scans/' + encodeURIComponent(id) + '/montage.png';
        status('');
      }
      document.body.dataset.scan = id;
    }).catch(function (e) { status('error: ' + e.message); });
  }

  function saveVerdict(verdict) {
    if (!S.detail) return Promise.resolve();
    var id = S.detail.id, reader = $('reader').value.trim();
    try { localStorage.setItem('lq-reader', reader); } catch (e) { /* private mode */ }
    status('saving\u2026');
    return api('/api/scans/' + encodeURIComponent(id) + '/verdict', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-LesionQuant-Token': TOKEN },
      body: JSON.stringify({ verdict: verdict, comment: $('comment').value, reader: reader })
    }).then(function (v) {
      if (S.detail.id === id) { S.detail.verdict = v; renderVerdict(v); }
      S.scans.forEach(function (s) { if (s.id === id) { s.verdict = v.verdict; s.comment = v.comment; } });
      renderList();
      status('saved: ' + v.verdict);
      document.body.dataset.saved = id + ':' + v.verdict + ':' + v.time_utc;
      S.saves = (S.saves || 0) + 1;
      document.body.dataset.saves = String(S.saves);
    }).catch(function (e) { status('NOT saved: ' + e.message); });
  }

  // The next scan (after the current one, wrapping) that has no accept/reject yet.
  function nextUnreviewed() {
    var n = S.scans.length;
    for (var d = 1; d < n; d++) {
      var i = (S.cur + d) % n, v = S.scans[i].verdict;
      if (v !== 'accept' && v !== 'reject') return openScan(i);
    }
    status('all scans reviewed');
  }

  function currentVerdict() {
    return S.detail && S.detail.verdict ? S.detail.verdict.verdict : 'pending';
  }

  function onKey(e) {
    var t = e.target;
    if (t && (t.tagName === 'TEXTAREA' || t.tagName === 'INPUT')) {
      if (e.key === 'Escape') { t.blur(); e.preventDefault(); }
      else if (e.key === 'Enter' && !e.shiftKey && t.id === 'comment') {
        e.preventDefault(); t.blur(); saveVerdict(currentVerdict());
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var handled = true;
    switch (e.key) {
      case 'ArrowUp': case 'k': showSlice(S.k + 1); break;
      case 'ArrowDown': case 'j': showSlice(S.k - 1); break;
      case 'PageUp': showSlice(S.k + 10); break;
      case 'PageDown': showSlice(S.k - 10); break;
      case 'Home': showSlice(S.detail.volume.n_slices - 1); break;
      case 'End': showSlice(0); break;
      case 'o': S.overlay = !S.overlay; renderOverlayState(); break;
      case '+': case '=': S.opacity = Math.min(1, S.opacity + 0.1); renderOverlayState(); break;
      case '-': case '_': S.opacity = Math.max(0.1, S.opacity - 0.1); renderOverlayState(); break;
      case '1': S.win = 'lung'; renderOverlayState(); showSlice(S.k); break;
      case '2': S.win = 'mediastinum'; renderOverlayState(); showSlice(S.k); break;
      case 'a': saveVerdict('accept'); break;
      case 'A': saveVerdict('accept').then(nextUnreviewed); break;
      case 'r': saveVerdict('reject').then(function () { $('comment').focus(); }); break;
      case 'c': $('comment').focus(); break;
      case 'n': openScan(S.cur + 1); break;
      case 'p': openScan(S.cur - 1); break;
      default: handled = false;
    }
    if (handled) e.preventDefault();
  }

  document.addEventListener('keydown', onKey);
  $('stack').addEventListener('wheel', function (e) {
    e.preventDefault(); showSlice(S.k + (e.deltaY > 0 ? -1 : 1));
  }, { passive: false });
  // HU and label under the pointer (at most one request in flight; the latest wins).
  var probeBusy = false, probeNext = null;
  function runProbe(url) {
    probeBusy = true;
    api(url).then(function (d) {
      $('probe').textContent = Math.round(d.hu) + ' HU' + (d.label_name ? ' \u00b7 ' + d.label_name : '');
    }).catch(function () { /* outside the image */ }).then(function () {
      probeBusy = false;
      if (probeNext) { var u = probeNext; probeNext = null; runProbe(u); }
    });
  }
  function probe(ev) {
    var vol = S.detail && S.detail.volume; if (!vol) return;
    var box = $('stack').getBoundingClientRect();
    var c = Math.floor((ev.clientX - box.left) / box.width * vol.cols);
    var r = Math.floor((ev.clientY - box.top) / box.height * vol.rows);
    if (r < 0 || c < 0 || r >= vol.rows || c >= vol.cols) return;
    var url = '/api/scans/' + encodeURIComponent(S.detail.id) + '/hu/' + S.k + '?r=' + r + '&c=' + c;
    if (probeBusy) probeNext = url; else runProbe(url);
  }
  $('stack').addEventListener('mousemove', probe);
  $('stack').addEventListener('mouseleave', function () { $('probe').textContent = ''; });
  $('profile').addEventListener('click', function (e) {
    var vol = S.detail && S.detail.volume; if (!vol) return;
    var row = Math.floor(e.offsetY / (e.target.height / vol.n_slices));
    showSlice(vol.n_slices - 1 - row);
  });
  $('accept').addEventListener('click', function () { saveVerdict('accept'); });
  $('reject').addEventListener('click', function () {
    saveVerdict('reject').then(function () { $('comment').focus(); });
  });
  window.addEventListener('resize', layout);
  try { $('reader').value = localStorage.getItem('lq-reader') || ''; } catch (e) { /* none */ }

  renderOverlayState();
  api('/api/scans').then(function (doc) {
    S.scans = doc.scans;
    renderFailed(doc.failed);
    renderList();
    var first = S.scans.findIndex(function (s) { return !s.verdict; });
    if (S.scans.length) openScan(first >= 0 ? first : 0);
    else status('no scans in this folder');
  }).catch(function (e) { status('error: ' + e.message); });
})();
