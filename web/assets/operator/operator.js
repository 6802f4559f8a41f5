/* The operator tablet page: the browser equivalent of the "Machine Monitor" Android app.
 *
 * Everything the page shows comes from GET /check-state for this tablet's UUID (kept in localStorage); every
 * action is one POST to the tablet API, after which the state is asked for again. A websocket on
 * /api/input-device-updates says when to ask again; without it the page polls.
 *
 * Plain ES5 and XMLHttpRequest on purpose: plant tablets run old Android browsers, and a LAN page served over
 * plain http is not a secure context (crypto has no UUID function there; no wake lock). */
(function () {
  'use strict';

  var UUID_KEY = 'oee.device_uuid';
  var NAME_KEY = 'oee.device_name'; // shown in the footer; the server names the tablet only before login
  var RETRY_MS = 5000; // a failed /check-state and a closed websocket are retried this often
  var POLL_MS = 30000; // /check-state while there are no live updates
  var SCREENS = ['connecting', 'pair', 'login', 'start', 'job', 'paused', 'form'];

  var storageLost = false;
  var uuid = deviceUuid();
  var state = null; // the last /check-state answer
  var deviceName = stored(NAME_KEY);
  var machineName = '';
  var shown = '';
  var startKey = ''; // what the job-start form was built from: an identical answer keeps what was typed
  var startFields = [];
  var startConfirmed = false;
  var pausedJob = null; // the job whose notes box is shown
  var formOpen = null; // the end-job or update-total form: {job, path, fields, done}
  var busy = false;
  var checking = false;
  var checkAgain = false;
  var checkTimer = null;
  var offlineMessage = false;
  var liveStarted = false; // the websocket is opened once the server knows this tablet
  var liveOpen = false;
  var liveEverOpen = false;
  var liveRefusal = ''; // why the server last refused the websocket
  var clockOffset = 0; // server time minus this tablet's time, in ms

  function $(id) {
    return document.getElementById(id);
  }

  // ---- identity ----

  function newUuid() {
    var b = [];
    var i;
    var c = window.crypto || window.msCrypto;
    if (c && c.getRandomValues && window.Uint8Array) {
      var a = new Uint8Array(16);
      c.getRandomValues(a);
      for (i = 0; i < 16; i++) b.push(a[i]);
    } else {
      for (i = 0; i < 16; i++) b.push(Math.floor(Math.random() * 256));
    }
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    var h = '';
    for (i = 0; i < 16; i++) {
      h += (b[i] + 0x100).toString(16).substr(1);
      if (i === 3 || i === 5 || i === 7 || i === 9) h += '-';
    }
    return h;
  }

  function stored(key) {
    try {
      return window.localStorage.getItem(key) || '';
    } catch (e) {
      return '';
    }
  }

  function deviceUuid() {
    var u = null;
    try {
      u = window.localStorage.getItem(UUID_KEY);
    } catch (e) {
      u = null;
    }
    if (u && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(u)) return u;
    u = newUuid();
    try {
      window.localStorage.setItem(UUID_KEY, u);
      storageLost = window.localStorage.getItem(UUID_KEY) !== u;
    } catch (e) {
      storageLost = true;
    }
    return u;
  }

  // ---- messages ----

  function showMessage(text, info) {
    var m = $('message');
    m.className = info ? 'message info' : 'message';
    m.textContent = text;
    m.hidden = false;
    offlineMessage = false;
    window.scrollTo(0, 0);
  }

  function showError(text) {
    showMessage(text, false);
  }

  function clearMessage() {
    $('message').hidden = true;
    $('message').textContent = '';
    offlineMessage = false;
  }

  // ---- HTTP ----

  function plainText(s) {
    if (!s) return '';
    var t = '';
    try {
      // A parsed, inert document: nothing in an HTML error page runs or loads.
      t = new window.DOMParser().parseFromString(s, 'text/html').body.textContent || '';
    } catch (e) {
      t = s.replace(/<[^>]*>/g, ' ');
    }
    t = t.replace(/\s+/g, ' ').replace(/^ | $/g, '');
    return t.length > 300 ? t.substr(0, 300) + '…' : t;
  }

  /* What went wrong, in the server's words when it gave any. */
  function reasonOf(x, data) {
    if (data && typeof data === 'object') {
      if (typeof data.reason === 'string' && data.reason) return data.reason;
      if (typeof data.error === 'string' && data.error) return data.error;
    }
    var text = plainText(x.responseText);
    if (text && !data) return text;
    if (x.status >= 200 && x.status < 300) return 'The server did not accept this and gave no reason.';
    return 'The server answered ' + x.status + (x.statusText ? ' ' + x.statusText : '') + '.';
  }

  /* done({err, status, data, date}): err is a message for the operator when the request failed, was refused
     (4xx/5xx) or was answered {"success": false}. */
  function request(method, path, body, done) {
    var x = new XMLHttpRequest();
    var finished = false;
    function finish() {
      if (finished) return;
      finished = true;
      var data = null;
      try {
        data = JSON.parse(x.responseText);
      } catch (e) {
        data = null;
      }
      var r = { status: x.status, data: data, date: null };
      try {
        r.date = x.getResponseHeader('Date');
      } catch (e) {
        r.date = null;
      }
      if (x.status === 0) {
        r.err = 'Cannot reach the server: check the tablet\'s network connection.';
      } else if (x.status < 200 || x.status > 299 || (data && data.success === false)) {
        r.err = reasonOf(x, data);
      }
      done(r);
    }
    x.open(method, path, true);
    x.timeout = 15000;
    x.setRequestHeader('Accept', 'application/json');
    x.onreadystatechange = function () {
      if (x.readyState === 4) finish();
    };
    x.ontimeout = finish;
    x.onerror = finish;
    if (body === undefined) {
      x.send(null);
    } else {
      x.setRequestHeader('Content-Type', 'application/json');
      x.send(JSON.stringify(body));
    }
  }

  function setBusy(on) {
    busy = on;
    document.body.className = on ? 'busy' : '';
  }

  /* One operator action. A refusal is shown in the message area; after it, onFail (if any) runs. */
  function post(path, body, onOk, onFail) {
    if (busy) return;
    setBusy(true);
    clearMessage();
    request('POST', path, body, function (r) {
      setBusy(false);
      if (r.err) {
        showError(r.err);
        if (onFail) onFail(r);
        return;
      }
      onOk(r.data || {});
    });
  }

  function withUuid(o) {
    o.device_uuid = uuid;
    return o;
  }

  // ---- state ----

  function checkState() {
    if (checkTimer) {
      clearTimeout(checkTimer);
      checkTimer = null;
    }
    if (checking) {
      checkAgain = true;
      return;
    }
    checking = true;
    request('GET', '/check-state?device_uuid=' + encodeURIComponent(uuid), undefined, function (r) {
      checking = false;
      var delay = POLL_MS;
      if (r.err) {
        offline(r.err);
        delay = RETRY_MS;
      } else if (!r.data || typeof r.data !== 'object') {
        offline('The server\'s answer to /check-state is not JSON: is this the OEE server?');
        delay = RETRY_MS;
      } else {
        if (offlineMessage) clearMessage();
        if (r.date) {
          var d = Date.parse(r.date);
          if (!isNaN(d)) clockOffset = d - new Date().getTime();
        }
        render(r.data);
        if (!liveStarted) {
          liveStarted = true;
          connectLive();
        }
      }
      if (checkAgain) {
        checkAgain = false;
        checkState();
      } else if (!liveOpen || shown === 'pair' || delay === RETRY_MS) {
        checkTimer = setTimeout(checkState, delay);
      }
    });
  }

  function offline(why) {
    formOpen = null;
    show('connecting');
    $('connecting-text').textContent = 'This tablet cannot show its machine right now. It tries again every few seconds.';
    $('connecting-retry').hidden = false;
    showError(why);
    offlineMessage = true;
  }

  function render(s) {
    state = s;
    if (typeof s.device_name === 'string' && s.device_name !== deviceName) {
      deviceName = s.device_name;
      try {
        window.localStorage.setItem(NAME_KEY, deviceName);
      } catch (e) {
        // Not kept: the footer shows it until the next reload.
      }
    }
    var wf = s.workflow_type;
    if (wf !== 'default' && wf !== 'pausable' && wf !== 'running_total') {
      offline('This page does not know the machine\'s workflow "' + wf + '": ask an administrator.');
      return;
    }
    if (s.state === 'no_user') {
      formOpen = null;
      if (typeof s.machine === 'string' && s.machine.indexOf('No assigned machine') === 0) {
        machineName = '';
        renderPair(s);
      } else {
        machineName = s.machine || '';
        renderLogin(s);
      }
    } else if (s.state === 'no_job') {
      formOpen = null;
      machineName = s.machine_name || machineName;
      renderStart(s);
    } else if (s.state === 'active_job' || s.state === 'paused') {
      if (formOpen && formOpen.job === s.job_number) {
        // Keep the open form and what was typed; Cancel shows the job as it is by then.
      } else {
        formOpen = null;
        renderJob(s);
      }
    } else {
      offline('This page does not know the tablet state "' + s.state + '": ask an administrator.');
      return;
    }
    footer();
  }

  function show(name) {
    for (var i = 0; i < SCREENS.length; i++) {
      $('screen-' + SCREENS[i]).hidden = SCREENS[i] !== name;
    }
    if (name !== 'job' && name !== 'paused') document.body.style.backgroundColor = '';
    if (shown !== name) window.scrollTo(0, 0);
    shown = name;
  }

  function footer() {
    var t = deviceName;
    if (machineName) t += (t ? ' · ' : '') + machineName;
    $('footer-text').textContent = t;
  }

  // ---- pairing ----

  function renderPair(s) {
    $('pair-device').textContent = s.device_name || '';
    show('pair');
    request('GET', '/api/v1/tablets/machines', undefined, function (r) {
      if (shown !== 'pair') return;
      if (r.err) {
        showError('Cannot list the machines: ' + r.err);
        return;
      }
      var box = $('pair-machines');
      box.innerHTML = '';
      var list = r.data && r.data.length !== undefined ? r.data : [];
      if (!list.length) {
        var p = document.createElement('p');
        p.textContent = 'There are no machines yet: an administrator adds them first.';
        box.appendChild(p);
      }
      for (var i = 0; i < list.length; i++) box.appendChild(machineButton(list[i]));
    });
  }

  function machineButton(m) {
    var b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('data-machine', String(m.id));
    b.textContent = m.name;
    if (m.paired) {
      b.disabled = true;
      var note = document.createElement('span');
      note.className = 'note';
      note.textContent = 'already has a tablet';
      b.appendChild(note);
    }
    b.onclick = function () {
      post('/api/v1/tablets/pair', withUuid({ machine_id: m.id }), checkState, function (r) {
        if (r.status === 403) {
          showError(r.err.replace(/[.\s]*$/, '. ') + 'This tablet is "' + deviceName +
            '": ask an administrator to pair it with ' + m.name + '.');
        }
        checkState();
      });
    };
    return b;
  }

  // ---- login ----

  function renderLogin(s) {
    $('login-machine').textContent = s.machine || '';
    $('login-device').textContent = s.device_name || '';
    if (shown !== 'login') {
      $('login-user').value = '';
      $('login-pin').value = '';
      show('login');
    }
  }

  function login(ev) {
    ev.preventDefault();
    var user = $('login-user').value.replace(/^\s+|\s+$/g, '');
    var pin = $('login-pin').value;
    if (!user) return showError('Enter your user id.');
    if (!pin) return showError('Enter your PIN.');
    post('/android-login', withUuid({ user_id: user, password: pin }), function () {
      $('login-pin').value = '';
      checkState();
    }, function () {
      $('login-pin').value = '';
    });
  }

  function logout() {
    formOpen = null;
    post('/android-logout', withUuid({}), checkState, checkState);
  }

  // ---- data entry (job start, job end, running total) ----

  function pad2(n) {
    return (n < 10 ? '0' : '') + n;
  }

  function hhmm(d) {
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes());
  }

  /* One input per requested field, in the server's order; entries without a title are skipped, as the
     Android app does. */
  function buildFields(box, requested, prefix) {
    var fields = [];
    box.innerHTML = '';
    if (!requested || typeof requested !== 'object') return fields;
    for (var key in requested) {
      if (!Object.prototype.hasOwnProperty.call(requested, key)) continue;
      var f = requested[key];
      if (!f || typeof f !== 'object' || !f.title) continue;
      fields.push(buildField(box, prefix, key, f));
    }
    return fields;
  }

  function buildField(box, prefix, key, f) {
    var id = prefix + '-' + key;
    var label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = f.title;
    var input = document.createElement('input');
    input.id = id;
    input.name = key;
    input.autocomplete = 'off';
    var field = { key: key, title: f.title, input: input, validation: null, current: false };
    if (f.type === 'number') {
      input.type = 'number';
      input.step = 'any';
      input.setAttribute('inputmode', 'decimal');
    } else if (f.type === 'time') {
      input.type = 'time';
    } else {
      input.type = 'text';
    }
    if (f.type === 'time' && f.autofill === 'current') {
      field.current = true;
      input.value = hhmm(new Date());
      input.oninput = function () {
        field.current = false;
      };
    } else if (f.autofill !== undefined && f.autofill !== null && f.autofill !== '') {
      input.value = String(f.autofill);
    }
    box.appendChild(label);
    box.appendChild(input);
    if (f.warning) {
      var w = document.createElement('p');
      w.className = 'hint warning';
      w.textContent = f.warning;
      box.appendChild(w);
    }
    if (f.validation && typeof f.validation === 'object') {
      field.validation = f.validation;
      var hint = document.createElement('p');
      hint.className = 'hint';
      box.appendChild(hint);
      var update = function () {
        var v = f.validation[input.value];
        hint.textContent = typeof v === 'string' ? v : '';
        startConfirmed = false;
      };
      input.onkeyup = update;
      input.onchange = update;
    }
    return field;
  }

  /* The typed values as strings (as the Android app sends them), or null after saying what is missing. */
  function collect(fields, confirmed) {
    var out = {};
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      var v = f.input.value;
      if (f.input.type === 'text') v = v.replace(/^\s+|\s+$/g, '');
      if (f.input.validity && f.input.validity.badInput) {
        showError(f.title + ': enter a number.');
        f.input.focus();
        return null;
      }
      if (v === '') {
        showError('Fill in ' + f.title + '.');
        f.input.focus();
        return null;
      }
      if (f.validation && !Object.prototype.hasOwnProperty.call(f.validation, v) && !confirmed) {
        showError(f.title + ' "' + v + '" did not pass data validation. Check it, or press the button again to ' +
          'continue anyway.');
        startConfirmed = true;
        return null;
      }
      out[f.key] = v;
    }
    return out;
  }

  function renderStart(s) {
    $('start-machine').textContent = s.machine_name || '';
    $('start-user').textContent = s.user_name || '';
    var key = JSON.stringify(s.requested_data || {});
    if (shown !== 'start' || key !== startKey) {
      startKey = key;
      startConfirmed = false;
      startFields = buildFields($('start-fields'), s.requested_data, 'start');
      show('start');
    }
  }

  function startJob(ev) {
    ev.preventDefault();
    var confirmed = startConfirmed;
    clearMessage();
    var values = collect(startFields, confirmed);
    if (!values) return;
    post('/android-start-job', withUuid(values), checkState);
  }

  function openForm(title, text, submit, path, done) {
    var s = state;
    formOpen = { job: s.job_number, path: path, done: done, fields: [] };
    $('form-title').textContent = title;
    $('form-text').textContent = text;
    $('form-submit').textContent = submit;
    formOpen.fields = buildFields($('form-fields'), s.requested_data_on_end, 'form');
    clearMessage();
    show('form');
  }

  function submitForm(ev) {
    ev.preventDefault();
    if (!formOpen) return;
    clearMessage();
    var values = collect(formOpen.fields, true);
    if (!values) return;
    var f = formOpen;
    post(f.path, withUuid(values), function (data) {
      formOpen = null;
      if (f.done) f.done(data);
      checkState();
    });
  }

  function cancelForm() {
    formOpen = null;
    clearMessage();
    if (state) render(state);
    checkState();
  }

  // ---- the job ----

  function codeOf(s, id) {
    var codes = s.activity_codes || [];
    for (var i = 0; i < codes.length; i++) if (codes[i].activity_code_id === id) return codes[i];
    return null;
  }

  function codeButtons(box, s, onTap) {
    box.innerHTML = '';
    var codes = s.activity_codes || [];
    for (var i = 0; i < codes.length; i++) {
      (function (c) {
        var b = document.createElement('button');
        b.type = 'button';
        b.setAttribute('data-code', String(c.activity_code_id));
        b.textContent = c.description;
        if (c.colour) b.style.borderLeftColor = c.colour;
        if (c.activity_code_id === s.current_activity_code_id) b.className = 'current';
        b.onclick = function () {
          onTap(c);
        };
        box.appendChild(b);
      })(codes[i]);
    }
  }

  function renderJob(s) {
    var current = codeOf(s, s.current_activity_code_id);
    var currentText = current ? current.description : 'Code ' + s.current_activity_code_id;
    var paused = s.state === 'paused';
    if (paused) {
      if (pausedJob !== s.job_number) $('paused-notes').value = '';
      pausedJob = s.job_number;
      $('paused-job-number').textContent = s.job_number;
      $('paused-code').textContent = currentText;
      codeButtons($('paused-codes'), s, function (c) {
        post('/pausable-android-update', withUuid({ activity_code_id: Number(c.activity_code_id) }), checkState,
          checkState);
      });
      show('paused');
    } else {
      pausedJob = null;
      $('job-number').textContent = s.job_number;
      $('job-code').textContent = currentText;
      $('job-pause').hidden = s.workflow_type !== 'pausable';
      $('job-total').hidden = s.workflow_type !== 'running_total';
      if (s.workflow_type === 'running_total') $('job-quantity').textContent = String(s.current_quantity);
      codeButtons($('job-codes'), s, function (c) {
        post('/android-update', withUuid({ activity_code_id: Number(c.activity_code_id) }), checkState, checkState);
      });
      show('job');
      tick();
    }
    document.body.style.backgroundColor = s.colour || (current && current.colour) || '';
  }

  /* When the next running total is due, in this tablet's clock, or NaN. */
  function totalDue(s) {
    var last = parseFloat(s.last_update);
    var every = parseFloat(s.update_frequency);
    return (last + every) * 1000 - clockOffset;
  }

  function tick() {
    var now = new Date();
    if (shown === 'start') {
      for (var i = 0; i < startFields.length; i++) {
        if (startFields[i].current) startFields[i].input.value = hhmm(now);
      }
    }
    if (shown === 'job' && state && state.workflow_type === 'running_total') {
      var due = totalDue(state);
      var left = Math.round((due - now.getTime()) / 1000);
      var late = !(left > 0);
      var text;
      if (isNaN(due)) text = '';
      else if (late) text = 'Update required';
      else {
        text = 'Next total due in ' + Math.floor(left / 3600) + ':' + pad2(Math.floor(left / 60) % 60) + ':' +
          pad2(left % 60);
      }
      $('job-due').textContent = text;
      $('job-due').className = late && !isNaN(due) ? 'due late' : 'due';
      $('job-update-total').className = late && !isNaN(due) ? 'big primary late' : 'big primary';
    }
  }

  function endJob() {
    openForm('End job ' + state.job_number, 'Enter the quantities made in this job.', 'End job',
      '/android-end-job', null);
  }

  function updateTotal() {
    var since = parseFloat(state.last_update);
    var text = 'Enter the quantity produced';
    if (!isNaN(since)) text += ' since ' + hhmm(new Date(since * 1000 - clockOffset));
    text += '. Current total: ' + state.current_quantity;
    openForm('Update total', text, 'Save total', '/android-update-quantity', function (data) {
      if (data.quantity_produced !== undefined) {
        showMessage('Saved. Total: ' + data.quantity_produced + ' good, ' + data.quantity_rejects + ' rejects.',
          true);
      }
    });
  }

  function pause() {
    post('/pausable-pause-job', withUuid({}), checkState, checkState);
  }

  function resume() {
    var current = state ? codeOf(state, state.current_activity_code_id) : null;
    var reason = current ? current.description : '';
    post('/pausable-resume-job', withUuid({ downtime_reason: reason, notes: $('paused-notes').value }), function () {
      $('paused-notes').value = '';
      checkState();
    }, checkState);
  }

  // ---- live updates ----

  function setLive(on) {
    liveOpen = on;
    $('live').className = on ? 'live' : 'live off';
    $('live').textContent = on ? 'live' : 'live updates off' + (liveRefusal ? ': ' + liveRefusal : '');
  }

  function connectLive() {
    if (!window.WebSocket) return;
    var url = (window.location.protocol === 'https:' ? 'wss://' : 'ws://') + window.location.host +
      '/api/input-device-updates';
    var ws;
    try {
      ws = new window.WebSocket(url);
    } catch (e) {
      setTimeout(connectLive, RETRY_MS);
      return;
    }
    var opened = false;
    var giveUp = setTimeout(function () {
      if (!opened) ws.close();
    }, 10000);
    ws.onopen = function () {
      opened = true;
      clearTimeout(giveUp);
      ws.send(JSON.stringify({ device_uuid: uuid }));
      liveRefusal = '';
      setLive(true);
      // Changes made while disconnected were not announced.
      if (liveEverOpen) checkState();
      liveEverOpen = true;
    };
    ws.onmessage = function (ev) {
      var msg = null;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      // The first frame is the bare current code id: nothing to do.
      if (!msg || typeof msg !== 'object') return;
      if (msg.action === 'activity_change') {
        checkState();
      } else if (msg.action === 'logout') {
        formOpen = null;
        showMessage('You have been logged out.', true);
        checkState();
      } else if (msg.action === 'error') {
        // The server closes the socket after this; it is tried again like any other closed socket.
        liveRefusal = typeof msg.reason === 'string' ? msg.reason : 'refused';
      }
    };
    ws.onclose = function () {
      clearTimeout(giveUp);
      var wasOpen = liveOpen;
      setLive(false);
      if (wasOpen && !checkTimer && !checking) checkTimer = setTimeout(checkState, POLL_MS);
      setTimeout(connectLive, RETRY_MS);
    };
  }

  // ---- start ----

  $('message').onclick = clearMessage;
  $('connecting-retry').onclick = function () {
    clearMessage();
    checkState();
  };
  $('pair-refresh').onclick = function () {
    clearMessage();
    checkState();
  };
  $('login-form').onsubmit = login;
  $('start-form').onsubmit = startJob;
  $('start-logout').onclick = logout;
  $('job-logout').onclick = logout;
  $('paused-logout').onclick = logout;
  $('job-end').onclick = endJob;
  $('paused-end').onclick = endJob;
  $('job-update-total').onclick = updateTotal;
  $('job-pause').onclick = pause;
  $('paused-resume').onclick = resume;
  $('form-form').onsubmit = submitForm;
  $('form-cancel').onclick = cancelForm;

  show('connecting');
  setInterval(tick, 1000);
  checkState();
  if (storageLost) {
    showError('This browser does not keep data for this page (private browsing?): the tablet gets a new ' +
      'identity on every reload and must be paired again.');
  }
})();
