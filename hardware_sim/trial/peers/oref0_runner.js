#!/usr/bin/env node
// A long-running OpenAPS oref0 (0.7.1) decision service: one JSON request per line on stdin, one JSON answer
// per line on stdout. It calls oref0's own library entry points the way oref0-pump-loop chains them:
//   lib/profile -> lib/iob -> lib/meal -> lib/determine-basal/autosens -> lib/glucose-get-last
//   -> lib/determine-basal/determine-basal (with lib/basal-set-temp), microboluses (SMB) allowed.
// State (glucose, pump history, carb entries) is kept per subject id, so each request only carries what is new.
//
// Requests:
//   {"op":"init","id":ID,"profile_inputs":{settings,targets,basals,isf,carbratio,preferences}}
//   {"op":"step","id":ID,"time_ms":T,"glucose":{...}|null,"pump_events":[oldest..newest],"carbs":[{carbs,created_at}],
//    "current_temp":{"duration":min,"rate":U/h,"temp":"absolute"}}
//   {"op":"close","id":ID}
// Answers: {"ok":true,...} or {"ok":false,"error":"..."}.
// Pitfalls handled here (see shared/reference/peers.md): pump history newest-first with TempBasalDuration
// directly before its TempBasal (same timestamp string); simulated time passed as currentTime/clock (run with
// TZ=UTC); autosens in "retrospective" mode so it anchors on the data, not the wall clock; COB needs >= 36
// readings and autosens >= 72, as in oref0's own command-line tools.
'use strict';

var path = require('path');
var readline = require('readline');

var oref0Dir = process.env.OREF0_DIR;
if (!oref0Dir) {
  process.stdout.write(JSON.stringify({ok: false, error: 'OREF0_DIR is not set'}) + '\n');
  process.exit(2);
}
function lib(name) { return require(path.join(oref0Dir, 'lib', name)); }

var generateProfile = lib('profile');
var generateIob = lib('iob');
var generateMeal = lib('meal');
var detectSensitivity = lib('determine-basal/autosens');
var getLastGlucose = lib('glucose-get-last');
var determineBasal = lib('determine-basal/determine-basal');
var tempBasalFunctions = lib('basal-set-temp');

// oref0 narrates everything on stderr; a decision service must not pay for (or block on) that.
var quiet = process.env.OREF0_RUNNER_VERBOSE !== '1';
if (quiet) {
  console.error = function () {};
  process.stderr.write = function () { return true; };
}

var HISTORY_KEEP_MS = 24 * 3600 * 1000;
var AUTOSENS_EVERY_MS = 30 * 60 * 1000; // oref0-pump-loop refreshes autosens about every 30 min
var subjects = {};

function init(request) {
  var inputs = Object.assign({}, request.profile_inputs.preferences || {});
  ['settings', 'targets', 'basals', 'isf', 'carbratio'].forEach(function (k) { inputs[k] = request.profile_inputs[k]; });
  inputs.temptargets = [];
  var finalResult = {stdout: '', err: '', return_val: 0};
  var profile = generateProfile(finalResult, inputs);
  if (profile === -1 || !profile) {
    throw new Error('oref0 refused the profile: ' + finalResult.err);
  }
  subjects[request.id] = {
    profile: profile,
    basalprofile: inputs.basals,
    glucose: [], // newest first
    history: [], // newest first
    carbs: [], // newest first
    autosens: {ratio: 1.0},
    autosensAt: -Infinity,
  };
  return {ok: true, profile: {max_iob: profile.max_iob, max_basal: profile.max_basal, sens: profile.sens,
    carb_ratio: profile.carb_ratio, min_bg: profile.min_bg, max_bg: profile.max_bg, dia: profile.dia}};
}

function prune(list, field, nowMs) {
  var keepAfter = nowMs - HISTORY_KEEP_MS;
  while (list.length && new Date(list[list.length - 1][field]).getTime() < keepAfter) { list.pop(); }
}

function step(request) {
  var s = subjects[request.id];
  if (!s) { throw new Error('unknown subject ' + request.id + ' (send init first)'); }
  var now = new Date(request.time_ms);
  var clock = now.toISOString();
  if (request.glucose) { s.glucose.unshift(request.glucose); }
  // pump events arrive oldest first; history is newest first, and a TempBasal must be preceded (lower index)
  // by its TempBasalDuration: the caller sends [TempBasal, TempBasalDuration] pairs in that order.
  (request.pump_events || []).forEach(function (e) { s.history.unshift(e); });
  (request.carbs || []).forEach(function (c) { s.carbs.unshift(c); });
  prune(s.glucose, 'dateString', request.time_ms);
  prune(s.history, 'timestamp', request.time_ms);
  prune(s.carbs, 'created_at', request.time_ms);

  if (!s.glucose.length) { return {ok: true, reason: 'no glucose data yet'}; }
  var glucoseData = s.glucose.map(function (g) { return Object.assign({}, g); });
  var profile = s.profile;

  if (glucoseData.length >= 72 && request.time_ms - s.autosensAt >= AUTOSENS_EVERY_MS) {
    var sensInputs = {
      iob_inputs: {history: s.history, profile: profile},
      carbs: s.carbs, glucose_data: glucoseData.map(function (g) { return Object.assign({}, g); }),
      basalprofile: s.basalprofile, temptargets: {}, retrospective: true, deviations: 96,
    };
    var r8 = detectSensitivity(sensInputs).ratio;
    sensInputs.deviations = 288;
    sensInputs.glucose_data = glucoseData.map(function (g) { return Object.assign({}, g); });
    var r24 = detectSensitivity(sensInputs).ratio;
    s.autosens = {ratio: Math.min(r8, r24)};
    s.autosensAt = request.time_ms;
  }

  var iobData = generateIob({history: s.history, history24: null, profile: profile, clock: clock, autosens: s.autosens});
  var mealData = generateMeal({history: s.history, profile: profile, basalprofile: s.basalprofile, clock: clock,
    carbs: s.carbs, glucose: glucoseData.map(function (g) { return Object.assign({}, g); })});
  if (glucoseData.length < 36) { mealData.mealCOB = 0; }
  var glucoseStatus = getLastGlucose(glucoseData);
  var currentTemp = request.current_temp || {duration: 0, rate: 0, temp: 'absolute'};
  var rT = determineBasal(glucoseStatus, currentTemp, iobData, profile, s.autosens, mealData, tempBasalFunctions,
    true, null, now);
  if (rT.error) { return {ok: true, reason: 'determine-basal: ' + rT.error}; }
  return {
    ok: true,
    rate: (typeof rT.rate === 'number') ? rT.rate : null,
    duration: (typeof rT.duration === 'number') ? rT.duration : null,
    units: (typeof rT.units === 'number') ? rT.units : 0,
    eventualBG: rT.eventualBG, insulinReq: rT.insulinReq, carbsReq: rT.carbsReq || 0,
    COB: rT.COB, IOB: rT.IOB, sensitivityRatio: rT.sensitivityRatio, reason: rT.reason,
  };
}

var rl = readline.createInterface({input: process.stdin, terminal: false});
rl.on('line', function (line) {
  if (!line.trim()) { return; }
  var answer;
  try {
    var request = JSON.parse(line);
    if (request.op === 'init') { answer = init(request); }
    else if (request.op === 'step') { answer = step(request); }
    else if (request.op === 'close') { delete subjects[request.id]; answer = {ok: true}; }
    else if (request.op === 'ping') { answer = {ok: true, oref0: require(path.join(oref0Dir, 'package.json')).version}; }
    else { answer = {ok: false, error: 'unknown op ' + request.op}; }
  } catch (e) {
    answer = {ok: false, error: String(e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e)};
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});
rl.on('close', function () { process.exit(0); });
process.stdout.on('error', function () { process.exit(0); }); // the parent went away: nothing to answer
