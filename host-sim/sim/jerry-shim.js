// ES5, not TypeScript: this runs inside the device engine (duk, jerry) with the image, never in Node.
/*
 * The native functions of a JerryScript C port (boards/jerryscript/README.md), in ES5, so the
 * jerryscript image runs under any ES5 engine with typed arrays (duk in CI, jerry, node):
 *   e4_storage_read(name) -> ArrayBuffer | undefined
 *   e4_storage_write(name, bytes, offset, size) -> boolean
 *   e4_storage_erase(name)
 *   e4_publish(topic, bytes), e4_subscribe(topic)
 *   e4_time() -> seconds (optional in a port), e4_log(level, message) (optional)
 * Storage follows the contract the flash store relies on (the rules of Espruino's Storage):
 * write(name, data, 0, size) creates a file of `size` bytes reading 0xFF and writes `data` at its
 * start; a later write(name, data, offset) may only change bytes still reading 0xFF (flash
 * programming), else it fails; erase(name) removes the file and its bytes at once.
 * Observation for tests: the global E4SHIM { files, published, subscribed, now, writes }.
 */
var E4SHIM = { files: {}, published: [], subscribed: [], now: 1000, writes: 0, failNextWrite: false };

function e4_storage_read(name) {
  var f = E4SHIM.files['$' + name];
  if (!f) return undefined;
  var out = new Uint8Array(f.length);
  for (var i = 0; i < f.length; i++) out[i] = f[i];
  return out.buffer;
}

function e4_storage_write(name, data, offset, size) {
  var key = '$' + name;
  var f = E4SHIM.files[key];
  offset = offset || 0;
  E4SHIM.writes++;
  if (E4SHIM.failNextWrite) {
    E4SHIM.failNextWrite = false;
    return false;
  }
  var i;
  if (offset === 0 && (size || !f)) {
    var n = size || data.length;
    if (data.length > n) return false;
    f = new Uint8Array(n);
    for (i = 0; i < n; i++) f[i] = 255;
    E4SHIM.files[key] = f;
  }
  if (!f || offset + data.length > f.length) return false;
  for (i = 0; i < data.length; i++) {
    var old = f[offset + i];
    if (old !== 255 && old !== data[i]) return false; // already written with different data
  }
  for (i = 0; i < data.length; i++) f[offset + i] = data[i];
  return true;
}

function e4_storage_erase(name) {
  var f = E4SHIM.files['$' + name];
  if (f) for (var i = 0; i < f.length; i++) f[i] = 0;
  delete E4SHIM.files['$' + name];
}

function e4_publish(topic, data) {
  var copy = new Uint8Array(data.length);
  for (var i = 0; i < data.length; i++) copy[i] = data[i];
  E4SHIM.published.push({ topic: topic, data: copy });
}

function e4_subscribe(topic) {
  E4SHIM.subscribed.push(topic);
}

function e4_time() {
  return E4SHIM.now;
}

function e4_log(level, message) {
  print('E4LOG ' + level + ' ' + message);
}
