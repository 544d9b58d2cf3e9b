// Starts Swagger UI from local files (kept out of the page: the Content-Security-Policy forbids inline scripts).
"use strict";
window.addEventListener("load", () => {
  window.SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: false });
});
