// Swagger UI of /docs, from the vendored bundle (no CDN: the intranet has none).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  oauth2RedirectUrl: `${window.location.origin}/docs/oauth2-redirect`,
});
