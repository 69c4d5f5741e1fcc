// The operator's console in a real browser: Debian's chromium driven by playwright-core.
// Started by tests/console_browser.rs, which runs the gateway and the upstreams; this script
// starts nothing itself. Its environment:
//   CONSOLE_ADMIN_URL    the admin listener, e.g. http://127.0.0.1:9090
//   CONSOLE_TOKEN        an admin token
//   CONSOLE_DELIVERIES   JSON [{name: forged|genuine|failing, url, headers: [[k, v]], body}]
//   CONSOLE_SCREENSHOTS  where to save console-*.png (optional)
//   PORTCULLIS_CHROMIUM  the browser (default /usr/bin/chromium)
//   CONSOLE_SOFT=1       for a developer only, never in CI: an endpoint that answers 501 (not
//                        built yet) is answered with a sample of its documented shape, and
//                        the log says MOCKED, so the rest of the console can be looked at
// When the failing upstream must be fixed it prints FIX_UPSTREAM and waits for a line on
// its standard input. Any failed step exits 1 with the step named.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const admin = process.env.CONSOLE_ADMIN_URL;
const token = process.env.CONSOLE_TOKEN;
const deliveries = JSON.parse(process.env.CONSOLE_DELIVERIES || '[]');
const shots = process.env.CONSOLE_SCREENSHOTS;
// Generous: CI runs this beside every other test on two cores.
const STEP_MS = 20000;

const stdin = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once('line', resolve));

function log(msg) {
  process.stdout.write(`${msg}\n`);
}
function check(cond, what) {
  if (!cond) throw new Error(what);
}

let step = 'start';

// CONSOLE_SOFT=1 only: samples of the documented shapes for endpoints still answering 501.
async function mockUnbuilt(page) {
  const now = Date.now();
  const from = now - (now % 60000) - 59 * 60000;
  const counts = (seed) => Array.from({ length: 60 }, (_, i) => ((i * 7 + seed) % 11 > 6 ? (i + seed) % 5 : 0));
  const samples = {
    stats: { bucket_ms: 60000, from_ms: from, to_ms: now, series: [
      { route: '/payments', outcome: 'forwarded', counts: counts(1) },
      { route: '/payments', outcome: 'invalid_signature', counts: counts(4).map((n) => n % 2) },
      { route: '/invoices', outcome: 'upstream_error', counts: counts(3).map((n) => n % 3) },
    ] },
    dead: { dead_letters: [{ id: '1', route: '/ledger', event_id: 'evt_ledger_1', attempts: 2, age_secs: 12, last_error: 'upstream answered 503 Service Unavailable' }] },
    replay: { replay_id: null, outcome: 'forwarded', status: 200, upstream_status: 200 },
  };
  await page.route(/\/api\/(stats|dead-letters|deliveries\/[^/?]+(\/replay)?)(\?.*)?$/, async (route) => {
    const res = await route.fetch();
    const url = route.request().url();
    let body = null;
    if (res.status() === 501) {
      body = /stats/.test(url) ? samples.stats : /dead-letters/.test(url) ? samples.dead : samples.replay;
    } else if (/\/api\/deliveries\/[^/?]+$/.test(url) && res.ok()) {
      const d = await res.json();
      if (d.diagnosis === undefined) {
        body = { ...d,
          diagnosis: d.outcome === 'invalid_signature'
            ? { summary: 'The signature does not match: no configured secret signs these bytes.', steps: ['header Paylent-Signature: present, hex', 'secret #0: HMAC-SHA256 differs', 'no near miss (encoding, newline, hash)'] }
            : { summary: `The upstream answered ${d.upstream_status}.`, steps: [] },
          timeline: [{ time_ms: d.time_ms, label: 'arrived' }, { time_ms: d.time_ms, outcome: d.outcome, status: d.status, upstream_status: d.upstream_status }],
          replayable: d.outcome === 'upstream_error',
          capture: d.outcome === 'invalid_signature' ? null : { method: 'POST', target: d.path, headers: [['content-type', 'application/json'], ['paylent-signature', 'a1b2c3…']], body: btoa('{"event":"invoice.paid"}'), body_text: '{"event":"invoice.paid","event_id":"evt_failing_1","amount":4200}', truncated: false, verified: true } };
      }
    }
    if (body) {
      log(`MOCKED ${route.request().method()} ${url}`);
      await route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
    } else await route.fulfill({ response: res });
  });
}
async function run() {
  check(admin && token && deliveries.length === 3, 'CONSOLE_ADMIN_URL, CONSOLE_TOKEN and three CONSOLE_DELIVERIES are needed');
  const browser = await chromium.launch({
    executablePath: process.env.PORTCULLIS_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console error: ${m.text()}`);
    });
    if (process.env.CONSOLE_SOFT === '1') await mockUnbuilt(page);
    const shot = async (name) => {
      if (shots) await page.screenshot({ path: join(shots, `console-${name}.png`), fullPage: false });
    };

    step = 'the sign-in form appears';
    await page.goto(admin);
    await page.waitForSelector('form#signin');

    step = 'a wrong token is refused';
    await page.fill('#token', 'token-wrong-wrong-wrong-wrong');
    await page.press('#token', 'Enter');
    await page.waitForSelector('#signin-status.error');
    check((await page.textContent('#signin-status')).includes('Wrong token'), 'the form says the token is wrong');
    check((await context.cookies()).every((c) => c.name !== 'portcullis_session'), 'no session cookie after a wrong token');

    step = 'sign in with the token';
    await page.fill('#token', token);
    await page.click('form#signin button[type=submit]');
    await page.waitForSelector('table.grid tbody#deliveries');
    const cookie = (await context.cookies()).find((c) => c.name === 'portcullis_session');
    check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', 'an HttpOnly, SameSite=Strict session cookie');
    check(!cookie.value.includes(token), 'the cookie does not hold the token');
    check(!(await page.evaluate(() => document.cookie)).includes('portcullis_session'), 'the page cannot read the cookie');

    step = 'send a forged, a genuine and a failing delivery through the gateway';
    const sentAt = Date.now();
    const answered = {};
    for (const d of deliveries) {
      const res = await fetch(d.url, { method: 'POST', headers: d.headers, body: d.body });
      answered[d.name] = res.status;
    }
    log(`gateway answered ${JSON.stringify(answered)}`);
    check(answered.forged === 401 && answered.genuine === 200 && answered.failing >= 500, `gateway answers ${JSON.stringify(answered)}`);

    step = 'all three appear in the live list with the right outcome';
    const expected = { forged: 'invalid_signature', genuine: 'forwarded', failing: 'upstream_error' };
    for (const o of Object.values(expected)) {
      await page.waitForSelector(`#deliveries tr[data-outcome="${o}"]`, { timeout: 5000 });
    }
    log(`three rows within ${Date.now() - sentAt} ms, without a reload`);
    await shot('deliveries');

    step = 'filter the list by outcome';
    await page.selectOption('select[name=outcome]', 'invalid_signature');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#deliveries tr')];
      return rows.length > 0 && rows.every((r) => r.dataset.outcome === 'invalid_signature');
    });
    await page.selectOption('select[name=outcome]', '');
    await page.waitForSelector('#deliveries tr[data-outcome="forwarded"]');

    step = 'routes and the outcome chart';
    await page.click('nav a[data-section=routes]');
    await page.waitForSelector('tr[data-route="/payments"]');
    await page.waitForSelector('#chart svg.chart rect, #chart .error, #chart-empty');
    const chartOk = await page.$('#chart svg.chart rect');
    await shot('routes');
    check(chartOk, `the chart draws bars (${await page.textContent('#chart')})`);

    step = 'dead letters';
    await page.click('nav a[data-section=dead-letters]');
    await page.waitForSelector('h1');
    await page.waitForSelector('table.grid tbody tr');
    await shot('dead-letters');
    check(!(await page.$('main .error')), `the dead letters list (${await page.textContent('main')})`);
    check(await page.$('tr[data-id]'), 'a dead letter is listed');

    step = 'a dead letter: its request, then purge it (confirmed)';
    await page.click('tr[data-id] a');
    await page.waitForSelector('main pre.code');
    check((await page.textContent('main')).includes('evt_ledger_1'), 'the dead letter shows its body');
    page.once('dialog', (d) => d.accept());
    await page.click('main button.danger');
    await page.waitForFunction(() => location.hash === '#/dead-letters');
    await page.waitForSelector('text=No dead letters.');

    step = 'open the forged delivery and read its diagnosis';
    await page.click('nav a[data-section=deliveries]');
    await page.click('#deliveries tr[data-outcome="invalid_signature"] a');
    await page.waitForSelector('.diagnosis-summary');
    const diagnosis = (await page.textContent('.diagnosis')) || '';
    log(`diagnosis: ${diagnosis.replace(/\s+/g, ' ').slice(0, 200)}`);
    check(/signature/i.test(diagnosis), 'the diagnosis speaks of the signature');
    check(!(await page.$('#replay')), 'a forged delivery has no Replay button');
    await shot('detail');

    step = 'fix the upstream, replay the failed delivery, see it delivered';
    log('FIX_UPSTREAM');
    await nextLine();
    await page.click('a[href="#/deliveries"]');
    await page.click('#deliveries tr[data-outcome="upstream_error"] a');
    await page.waitForSelector('#replay');
    await page.click('#replay');
    await page.waitForSelector('#replay-result .result, #replay-result .error');
    const result = await page.textContent('#replay-result');
    log(`replay: ${result}`);
    await shot('replay');
    check(await page.$('#replay-result .badge[data-outcome="forwarded"]'), `the replay is delivered (${result})`);
    await page.click('a[href="#/deliveries"]');
    await page.waitForSelector('#deliveries tr[data-outcome="forwarded"] >> text=replay');

    step = 'no script errors';
    check(problems.length === 0, problems.join('; '));
    log('console.mjs: all steps passed');
  } finally {
    await browser.close();
  }
}

run().then(
  () => process.exit(0),
  (e) => {
    log(`FAILED at step "${step}": ${e.message}`);
    process.exit(1);
  },
);
