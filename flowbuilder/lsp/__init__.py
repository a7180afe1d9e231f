"""The language server: `flowbuilder lsp` (see `server`) and the editor-independent parts it uses —
the workspace analysis (`session`), the names of a workspace (`symbols`), hover text (`hover`,
`docs`) and line edits (`textedits`)."""
