// An ESP32 sensor (E4 over MQTT over Wi-Fi): every PERIOD ms it publishes a temperature reading,
// protected with its topic's key, on TOPIC; it prints what it receives on ALERTS (decrypted by
// the runtime) and reports the last of it in its next reading, so whoever reads the readings
// sees that it got through. Flashed as the board's application (.bootcde): README.md here.
var TOPIC = 'plant/temp';
var ALERTS = 'plant/alerts';
var PERIOD = 5000;

// The runtime starts on E.on('init'), after this file ran: E4.device() is there from then on.
E.on('init', function () {
  var d = E4.device();
  var sent = 0;
  var alerts = 0;
  var lastAlert = null;

  function reading() {
    // The chip's own sensor; wire a real one here (e.g. a DS18B20 with require("DS18B20")). The
    // Linux build of Espruino has none (NaN): it reads a simulated 20-25 degrees instead.
    var t = E.getTemperature();
    if (isNaN(t)) t = 20 + 5 * Math.random();
    return Math.round(t * 10) / 10;
  }

  d.on('message', function (topic, data) {
    if (topic !== ALERTS) return;
    alerts++;
    lastAlert = E.toString(data);
    print('sensor: ' + topic + ': ' + lastAlert);
  });
  d.on('command', function () {
    print('sensor: the C2 changed my keys');
  });
  d.on('error', function (e, topic) {
    print('sensor: rejected a message on ' + topic + ': ' + e.result);
  });
  setInterval(function () {
    if (!d.connected) return;
    sent++;
    d.publish(TOPIC, JSON.stringify({ t: reading(), n: sent, alerts: alerts, last: lastAlert }));
  }, PERIOD);
});
