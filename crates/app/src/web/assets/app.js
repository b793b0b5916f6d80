// Convosphere Auth — the pages' one script (embedded in the binary).
// Everything works without it; it only adds copy buttons.
(function () {
  "use strict";

  function announce(button, text) {
    var status = document.getElementById(button.getAttribute("data-copy") + "-status");
    if (status) {
      status.textContent = text;
    }
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = text === "" ? label : "Copied";
    window.setTimeout(function () {
      button.textContent = label;
    }, 2000);
  }

  function fallbackCopy(target) {
    if (typeof target.select === "function") {
      target.focus();
      target.select();
    } else {
      var range = document.createRange();
      range.selectNodeContents(target);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) {
      return;
    }
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) {
      return;
    }
    var text = "value" in target ? target.value : target.innerText;
    var done = function () { announce(button, "Copied to the clipboard."); };
    var failed = function () {
      if (fallbackCopy(target)) {
        done();
      } else {
        announce(button, "Select the text and copy it with your keyboard.");
      }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, failed);
    } else {
      failed();
    }
  });

  // A key or code shown once is selected as soon as it gets focus.
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("input[data-select-on-focus]")) {
      event.target.select();
    }
  });
})();
