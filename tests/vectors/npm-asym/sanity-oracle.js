// Oracle for tests/vectors/gen_asym.py: Sanity's own webhook helper (@sanity/webhook, pinned in
// package.json). Reads one JSON request on stdin, prints the answer as JSON:
//   {"op": "sign", "body": "...", "timestamp": <ms>, "secret": "..."} -> {"header": "t=...,v1=..."}
//   {"op": "verify", "body": "...", "header": "...", "secret": "..."} -> {"valid": true|false}
const { encodeSignatureHeader, isValidSignature } = require("@sanity/webhook");

let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", async () => {
  const req = JSON.parse(input);
  if (req.op === "sign") {
    console.log(JSON.stringify({ header: await encodeSignatureHeader(req.body, req.timestamp, req.secret) }));
  } else {
    let valid;
    try {
      valid = await isValidSignature(req.body, req.header, req.secret);
    } catch (e) {
      valid = false;
    }
    console.log(JSON.stringify({ valid }));
  }
});
