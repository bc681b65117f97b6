// Sends events with the real @segment/analytics-node SDK, unchanged, to an mpaas server.
// Input: one JSON argument {host, writeKey, count}; output: one JSON line {sent, failures}.
"use strict";
const { Analytics } = require("@segment/analytics-node");

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const analytics = new Analytics({
    writeKey: cfg.writeKey,
    host: cfg.host,
    flushAt: 15,
    flushInterval: 100,
    maxRetries: 3,
  });
  const failures = [];
  analytics.on("error", (err) => failures.push(String((err && err.reason) || err)));
  const when = new Date("2020-01-01T00:00:00.250Z");
  for (let i = 0; i < cfg.count; i++) {
    analytics.track({
      userId: `u${i % 4}`,
      event: `Node ${i % 3}`,
      properties: { i, card: i === 0 ? "4111 1111 1111 1111" : undefined },
      timestamp: when,
      messageId: `node-${i}`,
    });
  }
  analytics.identify({ anonymousId: "anon-node", traits: { plan: "gold" }, messageId: "node-identify" });
  analytics.page({ userId: "u1", name: "Home", messageId: "node-page" });
  // A resend of the first event with the same messageId: the loader keeps one.
  analytics.track({ userId: "u0", event: "Node 0", properties: { i: 0 }, timestamp: when, messageId: "node-0" });
  await analytics.closeAndFlush({ timeout: 30000 });
  console.log(JSON.stringify({ sent: cfg.count + 3, failures }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
