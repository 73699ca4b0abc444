// The dashboard in a real browser: log in, watch the metrics move while calls flow through
// the gateway, approve a held call from the page and see the agent's call complete.
// Driven by tests/dashboard_browser.rs, which starts `harombe serve` and passes:
//   DASHBOARD_URL, ADMIN_TOKEN, MCP_URL, AGENT_TOKEN, SCREENSHOTS, HAROMBE_CHROMIUM,
//   HAROMBE_NODE_MODULES.
import { createRequire } from "node:module";
import path from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const require = createRequire(path.join(env("HAROMBE_NODE_MODULES"), "x.js"));
const { chromium } = require("playwright-core");

const shots = env("SCREENSHOTS");
const log = (...a) => console.log("[browser]", ...a);

// A minimal streamable-HTTP MCP client.
async function mcpSession(url, token) {
  let session = null;
  let id = 0;
  async function post(body) {
    const headers = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      authorization: `Bearer ${token}`,
    };
    if (session) {
      headers["mcp-session-id"] = session;
      headers["mcp-protocol-version"] = "2025-06-18";
    }
    const r = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    session = r.headers.get("mcp-session-id") ?? session;
    const text = await r.text();
    if (!text) return null;
    if ((r.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      const msgs = text
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => JSON.parse(l.slice(5)));
      return msgs.filter((m) => m.id !== undefined).pop() ?? null;
    }
    return JSON.parse(text);
  }
  const request = (method, params) => post({ jsonrpc: "2.0", id: ++id, method, params });
  await request("initialize", {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "browser-test-agent", version: "1" },
  });
  await post({ jsonrpc: "2.0", method: "notifications/initialized" });
  return { call: (name, args) => request("tools/call", { name, arguments: args }) };
}

async function metric(page, name) {
  const el = page.locator(`[data-metric="${name}"]`).first();
  const t = (await el.getAttribute("data-value")) ?? (await el.innerText());
  const n = Number(String(t).replace(/[^0-9.]/g, ""));
  if (Number.isNaN(n)) throw new Error(`metric ${name} shows ${JSON.stringify(t)}`);
  return n;
}

async function until(what, f, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

const browser = await chromium.launch({
  executablePath: env("HAROMBE_CHROMIUM"),
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
let exitCode = 0;
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
page.on("pageerror", (e) => {
  log("page error:", e.message);
  exitCode = 1;
});
try {
  const t0 = Date.now();
  await page.goto(env("DASHBOARD_URL"), { waitUntil: "load" });
  log(`dashboard loaded in ${Date.now() - t0} ms`);
  await page.locator("#token-input").fill(env("ADMIN_TOKEN"));
  await page.locator("#login-submit").click();
  await page.locator('[data-metric="tool_calls_24h"]').first().waitFor();
  await page.locator('#ws-status[data-state="live"]').waitFor({ timeout: 20000 });
  await until("the first metrics", async () => /[0-9]/.test(await page.locator('[data-metric="events_last_hour"]').first().innerText()));
  const before = await metric(page, "tool_calls_24h");
  log("tool calls before:", before);

  const agent = await mcpSession(env("MCP_URL"), env("AGENT_TOKEN"));
  for (let i = 0; i < 5; i++) {
    const r = await agent.call("read_file", { path: `docs/page-${i}.md` });
    if (!r?.result) throw new Error(`read_file failed: ${JSON.stringify(r)}`);
  }
  await until("the tool-call tile to count 5 more calls", async () => (await metric(page, "tool_calls_24h")) >= before + 5);
  log("tool calls after:", await metric(page, "tool_calls_24h"));
  await page.screenshot({ path: path.join(shots, "1-metrics.png"), fullPage: true });

  // A risky call is held: it appears in the approvals queue; approving it lets it through.
  const held = (await mcpSession(env("MCP_URL"), env("AGENT_TOKEN"))).call("delete_records", {
    table: "sessions",
    filter: "expired",
  });
  const row = page.locator('#approvals tr[data-approval-id][data-tool="delete_records"]').first();
  await row.waitFor({ timeout: 20000 });
  await page.screenshot({ path: path.join(shots, "2-held.png"), fullPage: true });
  await row.locator('[data-action="approve"]').click();
  const answer = await Promise.race([
    held,
    new Promise((_, rej) => setTimeout(() => rej(new Error("the held call did not finish")), 20000)),
  ]);
  const text = answer?.result?.content?.[0]?.text ?? "";
  if (!text.includes("deleted")) throw new Error(`the approved call did not complete: ${JSON.stringify(answer)}`);
  log("held call completed after approval:", text);
  await until("the queue to empty", async () => (await page.locator('#approvals tr[data-approval-id][data-tool="delete_records"]').count()) === 0);
  await page.screenshot({ path: path.join(shots, "3-approved.png"), fullPage: true });
} catch (e) {
  log("FAILED:", e.stack ?? e);
  await page.screenshot({ path: path.join(shots, "failure.png"), fullPage: true }).catch(() => {});
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
