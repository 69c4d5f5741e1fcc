// Oracle for tests/vectors/gen_cat1.py: reads a JSON list of cases on stdin, prints a JSON list
// of verdicts (true = the provider's own SDK accepts the delivery). Each case:
// {oracle: "mux"|"webflow"|"cashfree", secrets: [..], headers: {lower-case name: value}, body_b64, now}.
// A case is accepted when any of its secrets verifies (a receiver trying each configured secret).
"use strict";
const Mux = require("@mux/mux-node");
const { WebflowClient } = require("webflow-api");
const { Cashfree, CFEnvironment } = require("cashfree-pg");

const realNow = Date.now;

async function mux(c, secret, body) {
  const client = new Mux({ tokenId: "x", tokenSecret: "y", webhookSecret: secret });
  Date.now = () => c.now * 1000;
  try {
    await client.webhooks.verifySignature(body, c.headers, secret);
    return true;
  } catch (e) {
    return false;
  } finally {
    Date.now = realNow;
  }
}

async function webflow(c, secret, body) {
  const client = new WebflowClient({ accessToken: "x" });
  const ok = await client.webhooks.verifySignature({ headers: c.headers, body, secret });
  // The SDK checks no time; Webflow's documentation adds: refuse a request more than 5 minutes old.
  const ts = Number(c.headers["x-webflow-timestamp"]);
  const fresh = !((c.now * 1000 - ts) / 60000 > 5);
  return ok === true && fresh;
}

async function cashfree(c, secret, body) {
  const client = new Cashfree(CFEnvironment.SANDBOX, "client-id", secret);
  try {
    client.PGVerifyWebhookSignature(c.headers["x-webhook-signature"], body, c.headers["x-webhook-timestamp"]);
    return true;
  } catch (e) {
    return false;
  }
}

const ORACLES = { mux, webflow, cashfree };

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const cases = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const out = [];
  for (const c of cases) {
    const body = Buffer.from(c.body_b64, "base64").toString("utf8");
    let ok = false;
    for (const s of c.secrets) {
      if (await ORACLES[c.oracle](c, s, body)) ok = true;
    }
    out.push(ok);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
