import { createRequire } from "node:module";
import { webcrypto } from "node:crypto";
import "reflect-metadata";

// @peculiar/x509 loaded only after the Reflect metadata polyfill it depends on: a static import
// could be hoisted above the shim by a bundler, so it is required explicitly here.
const require = createRequire(import.meta.url);
export const x509 = require("@peculiar/x509") as typeof import("@peculiar/x509");
x509.cryptoProvider.set(webcrypto);
