"""The scene service: episodes and scenes as Fountain, PDF, Final Draft (FDX) and HTML."""
