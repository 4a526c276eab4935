"""Static files of the intake pages (inspector PWA, department worklist, 12319 hotline);
served by ``gateways.http.intake_pages``."""
