// The SNS oracle of tests/vectors/gen_cert.py: reads [{message, certs: {url: pem}}] on stdin
// and prints [{valid, error}], each message checked by sns-validator (a fresh copy per
// message, its certificate download answered from `certs` instead of the network).
"use strict";
const https = require("https");
const { EventEmitter } = require("events");

const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = [];

function check(i) {
  if (i === cases.length) {
    process.stdout.write(JSON.stringify(results));
    return;
  }
  const { message, certs } = cases[i];
  https.get = (url, cb) => {
    const req = new EventEmitter();
    const res = new EventEmitter();
    res.statusCode = certs[url] === undefined ? 404 : 200;
    process.nextTick(() => {
      cb(res);
      if (certs[url] !== undefined) res.emit("data", Buffer.from(certs[url]));
      res.emit("end");
    });
    return req;
  };
  delete require.cache[require.resolve("sns-validator")];
  const MessageValidator = require("sns-validator");
  new MessageValidator().validate(JSON.stringify(message), (err) => {
    results.push({ valid: !err, error: err ? String(err.message) : null });
    check(i + 1);
  });
}
check(0);
