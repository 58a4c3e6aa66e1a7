// The page that shows a new secret once: select it on focus, copy it on click.
// Kept out of the template so the admin's Content-Security-Policy can forbid inline scripts.
(function () {
  "use strict";
  var field = document.getElementById("portico-secret");
  var button = document.getElementById("portico-copy");
  if (!field || !button) {
    return;
  }
  field.addEventListener("focus", function () {
    field.select();
  });
  button.addEventListener("click", function () {
    field.select();
    if (navigator.clipboard) {
      navigator.clipboard.writeText(field.value);
    } else {
      document.execCommand("copy");
    }
    button.textContent = "Copied";
  });
})();
