"""The public 工单查询 page (served by gateways/http/reporter_status.py)."""
