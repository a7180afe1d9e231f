// The flowbuilder extension for VS Code. The grammar and the language configuration work on their
// own; this file starts the language server (`flowbuilder lsp`) through vscode-languageclient, which
// `npm install` in this folder provides. Plain CommonJS: nothing to build.
"use strict";

const vscode = require("vscode");

let client;

function serverCommand(configuration) {
  const command = configuration.get("server.command", ["flowbuilder", "lsp"]);
  if (!Array.isArray(command) || command.length === 0) {
    return ["flowbuilder", "lsp"];
  }
  return command;
}

async function activate(context) {
  const configuration = vscode.workspace.getConfiguration("flowbuilder");
  if (!configuration.get("server.enabled", true)) {
    return;
  }
  let languageclient;
  try {
    languageclient = require("vscode-languageclient/node");
  } catch (error) {
    vscode.window.showWarningMessage(
      "flowbuilder: run `npm install` in the extension folder for diagnostics, completion, hover " +
        "and formatting; syntax colours work without it."
    );
    return;
  }
  const [command, ...args] = serverCommand(configuration);
  const serverOptions = { command, args, transport: languageclient.TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: "file", language: "flowbuilder" },
      { scheme: "untitled", language: "flowbuilder" },
    ],
    synchronize: {
      // Templates and flows changed outside the editor (a checkout, a pull) are analysed again.
      fileEvents: vscode.workspace.createFileSystemWatcher("**/*.{flow,html,txt}"),
    },
  };
  client = new languageclient.LanguageClient("flowbuilder", "flowbuilder", serverOptions, clientOptions);
  context.subscriptions.push({ dispose: () => (client ? client.stop() : undefined) });
  await client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate, serverCommand };
