// Usage: node fetch.mjs PROXY_URL METHOD URL [BODY]; prints {"status", "headers", "body"} as JSON.
// Trust comes from NODE_EXTRA_CA_CERTS, exactly as an agent run through policyproxy gets it.
import { fetch, ProxyAgent } from "undici";

const [proxy, method, url, body] = process.argv.slice(2);
const response = await fetch(url, { method, body, dispatcher: new ProxyAgent(proxy) });
const text = await response.text();
console.log(JSON.stringify({ status: response.status, headers: Object.fromEntries(response.headers), body: text }));
