"""`jiesu knowledge …`: import/export XLSX (part 5), reindex (part 2), suggest (part 6), expire
(part 1). Each part adds its own commands here, in its own function."""

from __future__ import annotations

import typer

app = typer.Typer(help="知识库：导入导出、重建索引、到期检查、建议新增条目。", no_args_is_help=True)
