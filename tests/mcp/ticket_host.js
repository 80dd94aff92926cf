// A minimal MCP Apps host for the order ticket, in Node: runs the ticket's own script against a tiny DOM,
// answers ui/initialize, delivers preview_order's result, presses a button, and prints what the app posted.
// Usage: node ticket_host.js <ticket.html> <tool-result.json> <confirm|cancel>
"use strict";
const fs = require("fs");
const vm = require("vm");

const [html, resultFile, press] = process.argv.slice(2);
const script = /<script>([\s\S]*?)<\/script>/.exec(fs.readFileSync(html, "utf8"))[1];
const toolResult = JSON.parse(fs.readFileSync(resultFile, "utf8"));

function element(id) {
  return {
    id, textContent: "", className: "", disabled: false, children: [], listeners: {},
    addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); },
    append(...kids) { this.children.push(...kids); },
    replaceChildren(...kids) { this.children = kids; },
    text() { return this.textContent + this.children.map((c) => c.text()).join(" "); },
  };
}
const elements = {};
const document = {
  getElementById: (id) => (elements[id] ||= element(id)),
  createElement: (tag) => element(tag),
};
const posted = [];
const listeners = [];
const window = {
  addEventListener: (type, fn) => { if (type === "message") listeners.push(fn); },
  parent: { postMessage: (message) => posted.push(message) },
};
const deliver = (data) => listeners.forEach((fn) => fn({ data }));
const settle = () => new Promise((resolve) => setImmediate(resolve));

(async () => {
  vm.runInNewContext(script, { window, document, console, Promise, Map, Object, String, setImmediate });
  const init = posted.find((m) => m.method === "ui/initialize");
  deliver({ jsonrpc: "2.0", id: init.id, result: { hostContext: {} } });
  await settle();
  deliver({ jsonrpc: "2.0", method: "ui/notifications/tool-result", params: toolResult });
  const shown = document.getElementById("facts").text();
  const confirmEnabled = !document.getElementById("confirm").disabled;
  for (const fn of document.getElementById(press).listeners.click || []) fn();
  await settle();
  const call = posted.find((m) => m.method === "tools/call");
  if (call) deliver({ jsonrpc: "2.0", id: call.id, result: { content: [{ type: "text", text: "Placed (simulated)" }] } });
  await settle();
  process.stdout.write(JSON.stringify({
    posted, shown, confirmEnabled, status: document.getElementById("status").textContent,
  }));
})();
