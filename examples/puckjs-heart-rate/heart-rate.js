// A heart-rate monitor on a Puck.js (E4 over the gateway link): every PERIOD ms it publishes the
// heart rate, protected with its topic's key, on TOPIC; it prints what it receives on ALERTS
// (decrypted by the runtime) and reports the last of it in its next reading. Flashed as the
// board's application (.bootcde): README.md here.
var TOPIC = 'health/heart-rate';
var ALERTS = 'health/alerts';
var PERIOD = 5000;

// The runtime starts on E.on('init'), after this file ran: E4.device() is there from then on.
E.on('init', function () {
  var d = E4.device();
  var sent = 0;
  var lastAlert = null;

  function bpm() {
    // A pulse sensor on an analog pin (e.g. a PulseSensor on D1) would be read here; without one
    // the reading follows the Puck's light sensor, or a steady 60-80 where there is none.
    var level = typeof Puck !== 'undefined' ? Puck.light() : Math.random();
    return Math.round(60 + 20 * level);
  }

  d.on('message', function (topic, data) {
    if (topic !== ALERTS) return;
    lastAlert = E.toString(data);
    print('monitor: ' + lastAlert);
  });
  setInterval(function () {
    if (!d.connected) return;
    sent++;
    d.publish(TOPIC, JSON.stringify({ bpm: bpm(), n: sent, last: lastAlert }));
  }, PERIOD);
});
