// Mailcloak: progressive enhancements only; every page works without this file.
"use strict";

(function () {
  // "Copy" buttons next to addresses (shown only where the clipboard API exists).
  if (navigator.clipboard) {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(button.dataset.copy).then(function () {
          var label = button.textContent;
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = label; }, 1500);
        });
      });
    });
  }
})();
