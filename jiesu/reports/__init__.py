"""Assessment reports (日通报, 周汇总, 月分析): plain data in, HTML, PDF and Excel out."""
