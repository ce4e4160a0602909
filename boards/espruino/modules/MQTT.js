/* MQTT 3.1.1 client for Espruino (e4-mcu): the `MQTT` module the ESP32 image requires.
 * Written from the OASIS MQTT 3.1.1 specification; same calls and events as Espruino's own MQTT
 * module, so either can be stored as the Storage file "MQTT". Usage: README.md beside this file.
 * ES5 for Espruino's interpreter: strings are byte strings; events through Espruino's Object.on/emit. */
function MQTT(server, o) {
  o = o || {};
  this.server = server;
  this.port = o.port || 1883;
  // No random source on the device: without a client_id the board's serial number names it.
  this.client_id = o.client_id || 'e4-' + getSerial();
  this.keep_alive = o.keep_alive || 60;
  this.username = o.username;
  this.password = o.password;
  this.clean = o.clean_session !== false;
  this.connected = false;
  this.cn = null; // the TCP connection, from connect() until it closes
  this.rx = ''; // bytes received and not yet parsed
  this.pid = 0; // last packet identifier
  this.out = {}; // QoS 1 PUBLISH packets waiting for their PUBACK, by "$" + packet id
  this.ping = 0; // keep-alive interval
  this.waiting = false; // a PINGREQ is unanswered
}

/* 2.2.3 Remaining Length: 7 bits a byte, least significant first, high bit = more follow. */
function len(n) {
  var s = '';
  do {
    var b = n % 128;
    n = Math.floor(n / 128);
    s += String.fromCharCode(n ? b | 128 : b);
  } while (n);
  return s;
}
function u16(n) {
  return String.fromCharCode(n >> 8, n & 255);
}
/* 1.5.3 UTF-8 encoded strings: a 2-byte length, then the bytes. */
function str(s) {
  return u16(s.length) + s;
}
function packet(type, body) {
  return String.fromCharCode(type) + len(body.length) + body;
}

MQTT.prototype.send = function (p) {
  if (this.cn) this.cn.write(p);
};

MQTT.prototype.nextId = function () {
  this.pid = (this.pid % 65535) + 1;
  return this.pid;
};

MQTT.prototype.connect = function () {
  var m = this;
  if (m.cn) return;
  m.rx = '';
  try {
    m.cn = require('net').connect({ host: m.server, port: m.port }, function () {
      // 3.1 CONNECT: protocol name "MQTT", level 4, flags, keep alive; payload: client id,
      // then user name and password when given.
      var f = (m.clean ? 2 : 0) | (m.username !== undefined ? 128 : 0) | (m.password !== undefined ? 64 : 0);
      var body = str('MQTT') + '\x04' + String.fromCharCode(f) + u16(m.keep_alive) + str(m.client_id);
      if (m.username !== undefined) body += str(m.username);
      if (m.password !== undefined) body += str(m.password);
      m.send(packet(0x10, body));
    });
  } catch (e) {
    // The Linux build throws when the connection is refused; report it as boards do.
    m.cn = null;
    setTimeout(function () {
      m.emit('error', '' + (e.message || e));
      m.emit('disconnected');
    }, 0);
    return;
  }
  var cn = m.cn;
  cn.on('data', function (d) {
    if (m.cn === cn) m.receive(d);
  });
  cn.on('error', function (e) {
    if (m.cn === cn) m.emit('error', '' + (e.message || e.type || e));
  });
  cn.on('close', function () {
    if (m.cn === cn) m.closed();
  });
  cn.on('end', function () {
    if (m.cn === cn) m.closed();
  });
};

/* The connection ended (either side): forget it; QoS 1 publications wait for the next one. */
MQTT.prototype.closed = function () {
  var was = !!this.cn;
  if (this.ping) clearInterval(this.ping);
  this.ping = 0;
  this.cn = null;
  this.connected = false;
  this.waiting = false;
  this.rx = '';
  if (was) this.emit('disconnected');
};

MQTT.prototype.disconnect = function () {
  var cn = this.cn;
  if (!cn) return;
  if (this.connected) cn.write('\xe0\x00'); // 3.14 DISCONNECT
  this.closed();
  cn.end();
};

MQTT.prototype.receive = function (d) {
  this.rx += d;
  for (;;) {
    var b = this.rx;
    if (b.length < 2) return;
    // The remaining length: up to 4 bytes.
    var n = 0;
    var mul = 1;
    var i = 1;
    var c;
    do {
      if (i >= b.length) return;
      c = b.charCodeAt(i++);
      n += (c & 127) * mul;
      mul *= 128;
    } while (c & 128 && i < 5);
    if (b.length < i + n) return;
    this.rx = b.substr(i + n);
    this.handle(b.charCodeAt(0), b.substr(i, n));
  }
};

MQTT.prototype.handle = function (h, p) {
  var m = this;
  var type = h >> 4;
  if (type === 2) {
    // 3.2 CONNACK: return code in the second byte.
    var rc = p.charCodeAt(1);
    if (rc) {
      m.emit('error', 'connection refused by the broker, code ' + rc);
      return m.disconnect();
    }
    m.connected = true;
    m.ping = setInterval(function () {
      // 3.1.2.10: a PINGREQ within each keep-alive period; no PINGRESP by the next one: gone.
      if (m.waiting) {
        var cn = m.cn;
        m.closed();
        if (cn) cn.end();
        return;
      }
      m.waiting = true;
      m.send('\xc0\x00');
    }, m.keep_alive * 1000);
    m.emit('connected');
    // 4.4: QoS 1 publications not yet acknowledged are sent again, with DUP set.
    for (var k in m.out) m.send(String.fromCharCode(m.out[k].charCodeAt(0) | 8) + m.out[k].substr(1));
  } else if (type === 3) {
    // 3.3 PUBLISH: topic, packet id when QoS > 0, payload.
    var qos = (h >> 1) & 3;
    var tl = (p.charCodeAt(0) << 8) | p.charCodeAt(1);
    var at = 2 + tl;
    if (qos) {
      // 3.4 PUBACK (QoS 1); QoS 2 is not requested by this client.
      m.send('\x40\x02' + p.substr(at, 2));
      at += 2;
    }
    m.emit('publish', { topic: p.substr(2, tl), message: p.substr(at), dup: !!(h & 8), qos: qos, retain: !!(h & 1) });
  } else if (type === 4) {
    delete m.out['$' + ((p.charCodeAt(0) << 8) | p.charCodeAt(1))]; // PUBACK
  } else if (type === 9) {
    m.emit('subscribed', { id: (p.charCodeAt(0) << 8) | p.charCodeAt(1), qos: p.charCodeAt(2) }); // SUBACK (0x80: refused)
  } else if (type === 13) {
    m.waiting = false; // PINGRESP
  }
};

/* publish(topic, message, qos): message a (byte) string; qos 0 (default) or 1. */
MQTT.prototype.publish = function (topic, message, qos) {
  if (!this.connected) return false;
  qos = qos ? 1 : 0;
  var body = str(topic);
  var id;
  if (qos) {
    id = this.nextId();
    body += u16(id);
  }
  var p = packet(0x30 | (qos << 1), body + message);
  if (qos) this.out['$' + id] = p;
  this.send(p);
  return true;
};

/* subscribe(topic, { qos }): 3.8 SUBSCRIBE, one filter. */
MQTT.prototype.subscribe = function (topic, o) {
  if (!this.connected) return false;
  var qos = o && o.qos ? 1 : 0;
  this.send(packet(0x82, u16(this.nextId()) + str(topic) + String.fromCharCode(qos)));
  return true;
};

/* unsubscribe(topic): 3.10 UNSUBSCRIBE. */
MQTT.prototype.unsubscribe = function (topic) {
  if (!this.connected) return false;
  this.send(packet(0xa2, u16(this.nextId()) + str(topic)));
  return true;
};

exports.create = function (server, options) {
  return new MQTT(server, options);
};
