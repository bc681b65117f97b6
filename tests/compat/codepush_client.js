// Drives a server with the real CodePush acquisition SDK (code-push 4.2.3, as pinned by
// react-native-code-push 9.0.1). Input: one JSON argument; output: one JSON line.
//   {serverUrl, deploymentKey, appVersion, clientUniqueId, current?: {packageHash, label, appVersion},
//    steps: ["check" | "download" | "deploy:DeploymentSucceeded" | "deploy:DeploymentFailed"]}
"use strict";
const http = require("http");
const { AcquisitionManager } = require("code-push/script/acquisition-sdk");

const VERBS = ["GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"];

class NodeRequester {
  request(verb, url, body, callback) {
    if (typeof body === "function") {
      callback = body;
      body = undefined;
    }
    const headers = {
      "Accept": "application/json",
      "X-CodePush-Plugin-Name": "react-native-code-push",
      "X-CodePush-Plugin-Version": "9.0.1",
      "X-CodePush-SDK-Version": "4.2.3",
    };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const req = http.request(url, { method: VERBS[verb], headers }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (data += chunk));
      res.on("end", () => callback(null, { statusCode: res.statusCode, body: data }));
    });
    req.on("error", (err) => callback(err, null));
    if (body !== undefined) req.write(body);
    req.end();
  }
}

function call(fn) {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
}

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const manager = new AcquisitionManager(new NodeRequester(), {
    serverUrl: cfg.serverUrl,
    deploymentKey: cfg.deploymentKey,
    appVersion: cfg.appVersion,
    clientUniqueId: cfg.clientUniqueId,
  });
  const current = Object.assign({ appVersion: cfg.appVersion }, cfg.current || {});
  const out = {};
  for (const step of cfg.steps) {
    if (step === "check") {
      out.check = await call((cb) => manager.queryUpdateWithCurrentPackage(current, cb));
    } else if (step === "download") {
      await call((cb) => manager.reportStatusDownload(out.check, cb));
      out.download = "reported";
    } else if (step.startsWith("deploy:")) {
      const status = step.slice("deploy:".length);
      const previous = cfg.current ? cfg.current.label : null;
      await call((cb) => manager.reportStatusDeploy(out.check, status, previous, null, cb));
      out.deploy = status;
    }
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.message ? err.message : err) }) + "\n");
  process.exit(1);
});
