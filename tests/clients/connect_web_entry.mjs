// The browser side of connect_web.mjs, bundled by esbuild: the Connect scenario with
// connect-web's default transport (the Connect protocol over fetch), on `window`.

import { createConnectTransport } from "@connectrpc/connect-web";
import { scenario } from "./connect_scenario.js";

window.connectScenario = (baseUrl, token, binary) =>
  scenario(
    createConnectTransport({ baseUrl, useBinaryFormat: binary, useHttpGet: true }),
    token,
    binary ? "WebBinary" : "WebJson",
  );
