// The Connect scenario (connect_scenario.ts, compiled) with @connectrpc/connect-node: JSON over
// HTTP/1.1, or binary (protobuf) over HTTP/2 (h2c). Prints what it saw as one JSON object.
//
// Usage: node connect_node.mjs BASE_URL TOKEN json|binary

import { createConnectTransport } from "@connectrpc/connect-node";
import { scenario } from "./connect_scenario.js";

const [baseUrl, token, format] = process.argv.slice(2);
const binary = format === "binary";
const seen = await scenario(
  createConnectTransport({
    baseUrl,
    httpVersion: binary ? "2" : "1.1",
    useBinaryFormat: binary,
    useHttpGet: true,
  }),
  token,
  binary ? "Binary" : "Json",
);
console.log(JSON.stringify(seen));
