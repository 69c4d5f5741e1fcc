// The JavaScript oracles of tests/vectors/gen_oracle.py: reads a JSON list of requests on
// stdin, answers a JSON list of verdicts (true = the library accepts the request with one of
// the secrets). Run by gen_oracle.py as `node --input-type=module` from the folder holding the
// node_modules installed from package.json (package-lock.json pins the versions).
import { verify as githubVerify } from "@octokit/webhooks-methods";
import "@shopify/shopify-api/adapters/node";
import { shopifyApi, ApiVersion, LogSeverity } from "@shopify/shopify-api";
import { LinearWebhookClient } from "@linear/sdk/webhooks";
import { AwsLambdaReceiver } from "@zoom/rivet/meetings";

const realNow = Date.now;
const lower = (headers) => Object.fromEntries(headers.map(([k, v]) => [k.toLowerCase(), v]));

const oracles = {
  // @octokit/webhooks-methods: verify(secret, payload, signature) -> boolean.
  async github(secret, body, headers) {
    return await githubVerify(secret, body.toString("utf8"), lower(headers)["x-hub-signature-256"]);
  },
  // @shopify/shopify-api: shopify.webhooks.validate, both the Webhooks (X-Shopify-*) and the
  // Events (Shopify-*) header spellings.
  async shopify(secret, body, headers) {
    const shopify = shopifyApi({
      apiKey: "oracle", apiSecretKey: secret, scopes: [], hostName: "hooks.example.com",
      apiVersion: ApiVersion.October25, isEmbeddedApp: false,
      logger: { level: LogSeverity.Error, log: async () => {} },
    });
    const rawRequest = { method: "POST", url: "/webhooks/x", headers: lower(headers) };
    const r = await shopify.webhooks.validate({ rawBody: body.toString("utf8"), rawRequest, rawResponse: {} });
    return r.valid === true;
  },
  // @linear/sdk/webhooks: LinearWebhookClient.verify(rawBody, signature) checks the HMAC and
  // the signed body's webhookTimestamp within 60 s of Date.now().
  async linear(secret, body, headers) {
    return new LinearWebhookClient(secret).verify(body, lower(headers)["linear-signature"] ?? "");
  },
  // @zoom/rivet: the AWS Lambda receiver answers 200 to a verified event, 400 otherwise.
  async zoom(secret, body, headers) {
    const handler = new AwsLambdaReceiver({ webhooksSecretToken: secret }).start();
    const r = await handler({ body: body.toString("utf8"), headers: Object.fromEntries(headers), isBase64Encoded: false }, {});
    return r.statusCode === 200;
  },
};

const input = JSON.parse(await new Promise((resolve) => {
  let s = "";
  process.stdin.on("data", (c) => (s += c));
  process.stdin.on("end", () => resolve(s));
}));
console.debug = () => {};
const out = [];
for (const req of input) {
  Date.now = () => req.now * 1000;
  let ok = false;
  for (const secret of req.secrets) {
    try {
      if (await oracles[req.oracle](secret, Buffer.from(req.body_b64, "base64"), req.headers)) ok = true;
    } catch (e) {
      // a refusal
    }
  }
  Date.now = realNow;
  out.push(ok);
}
process.stdout.write(JSON.stringify(out));
