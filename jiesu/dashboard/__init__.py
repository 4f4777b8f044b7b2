"""The dashboard (数据大屏): the centre's leaders' figures of the day, week or month."""
