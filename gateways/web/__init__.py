"""The command-centre page: ES modules, CSS and vendored Leaflet / uPlot under ``static/``
(``package.json`` pins the libraries; ``npm run build`` copies them to ``static/vendor``)."""
