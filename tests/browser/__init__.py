"""Browser tests: the web app driven in headless Chromium (Debian's) through Playwright."""
