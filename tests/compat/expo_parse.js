// Parses an Expo Updates multipart answer with Expo's own parser
// (@expo/multipart-body-parser, used by expo-updates' tooling). Input: the response's
// content type as argv[2] and the body on stdin. Output: the parts as JSON.
"use strict";
const { parseMultipartMixedResponseAsync } = require("@expo/multipart-body-parser");

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const parts = await parseMultipartMixedResponseAsync(process.argv[2], Buffer.concat(chunks));
  const out = parts.map((p) => ({
    name: p.name,
    body: p.body,
    headers: Object.fromEntries(p.headers),
  }));
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err) }) + "\n");
  process.exit(1);
});
