// Starts GraphiQL on the page GET /graphql answers a browser with (linkgate/graphiql.py, which
// serves this file from linkgate/graphiql_assets/ under a name carrying its digest).
// A file, not an inline script: the page's Content-Security-Policy allows scripts from 'self'
// only. React, ReactDOM, GraphiQL and GraphiQLPluginExplorer are the UMD globals loaded before.
"use strict";

(function start() {
  // The endpoint is the page's own URL: it keeps working behind a proxy that adds a prefix.
  const endpoint = location.origin + location.pathname;
  const socketEndpoint = endpoint.replace(/^http/, "ws");
  const HEADERS_HINT = '{\n  "Authorization": "Bearer <token>"\n}';
  const FIRST_QUERY = [
    "# Linkgate. Sign in with the login mutation, put its token in Headers below as",
    '# {"Authorization": "Bearer <token>"}, then ask for the dashboard, e.g.',
    "# { viewer { accounts(first: 5) { edges { node { number name viewerPermissions } } } } }",
    "mutation SignIn {",
    '  login(input: {email: "you@example.com", password: "your password"}) {',
    "    token expiresAt refreshToken userErrors { code message }",
    "  }",
    "}",
    "",
  ].join("\n");

  // Header names in lower case (the socket's connection_init payload is the headers, and the
  // gateway reads `authorization` there); the hint's placeholder is never sent, so the login
  // mutation works while the hint is still in the editor.
  function headersToSend(headers) {
    const kept = {};
    for (const [name, value] of Object.entries(headers || {})) {
      if (typeof value === "string" && value.includes("<token>")) continue;
      kept[name.toLowerCase()] = value;
    }
    return kept;
  }

  // Queries and mutations over HTTP POST; subscriptions over graphql-transport-ws on the
  // same path (graphql-ws, bundled in graphiql.min.js), a socket per subscription carrying
  // the editor's current headers.
  const fetcher = GraphiQL.createFetcher({ url: endpoint, subscriptionUrl: socketEndpoint });
  function linkgateFetcher(params, options) {
    return fetcher(params, { ...options, headers: headersToSend(options && options.headers) });
  }

  const root = document.getElementById("graphiql");
  document.body.style.margin = "0";
  root.style.height = "100vh";
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: linkgateFetcher,
      plugins: [GraphiQLPluginExplorer.explorerPlugin()],
      defaultQuery: FIRST_QUERY,
      defaultHeaders: HEADERS_HINT,
      defaultEditorToolsVisibility: "headers",
      shouldPersistHeaders: false, // a token never lands in localStorage
    }),
  );
})();
