// Convosphere Auth — the pages' one script (embedded in the binary).
// Everything works without it; it adds copy buttons, and the WebAuthn
// calls of passkeys (which need a browser that has them).
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

// Passkeys: the WebAuthn calls of the login page and the security page.
// The server sends options and checks answers as WebAuthn's JSON (binary
// fields in base64url); the forms post the answer like any field.
(function () {
  "use strict";
  var PKC = window.PublicKeyCredential;
  if (!PKC || !navigator.credentials) {
    return;
  }

  function fromB64(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var bin = atob(b64 + "===".slice((b64.length + 3) % 4));
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      bytes[i] = bin.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toB64(buffer) {
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) {
      bin += String.fromCharCode(bytes[i]);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(json) {
    if (PKC.parseCreationOptionsFromJSON) {
      return PKC.parseCreationOptionsFromJSON(json);
    }
    json.challenge = fromB64(json.challenge);
    json.user.id = fromB64(json.user.id);
    (json.excludeCredentials || []).forEach(function (c) { c.id = fromB64(c.id); });
    return json;
  }

  function requestOptions(json) {
    if (PKC.parseRequestOptionsFromJSON) {
      return PKC.parseRequestOptionsFromJSON(json);
    }
    json.challenge = fromB64(json.challenge);
    (json.allowCredentials || []).forEach(function (c) { c.id = fromB64(c.id); });
    return json;
  }

  function answer(credential) {
    if (typeof credential.toJSON === "function") {
      return JSON.stringify(credential.toJSON());
    }
    var r = credential.response;
    var out = { id: credential.id, rawId: toB64(credential.rawId), type: credential.type, response: {},
      clientExtensionResults: credential.getClientExtensionResults() };
    ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"].forEach(function (k) {
      if (r[k]) {
        out.response[k] = toB64(r[k]);
      }
    });
    return JSON.stringify(out);
  }

  function say(form, text) {
    var status = form.querySelector("#passkey-status");
    if (status) {
      status.textContent = text;
    }
  }

  // POSTs the form's CSRF token to `url`: the challenge, or null (then
  // the form is posted as it is and the server says what is missing).
  function challenge(form, url) {
    var body = new URLSearchParams();
    body.set("csrf", form.elements.csrf.value);
    return fetch(url, { method: "POST", body: body, credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.json() : null;
    });
  }

  function finish(form, started, credential) {
    form.elements.challenge_id.value = started.challenge_id;
    form.elements.credential.value = answer(credential);
    HTMLFormElement.prototype.submit.call(form);
  }

  var register = document.querySelector("form[data-passkey-register]");
  if (register) {
    register.addEventListener("submit", function (event) {
      if (register.elements.credential.value) {
        return;
      }
      event.preventDefault();
      say(register, "Follow your browser's prompt…");
      challenge(register, register.getAttribute("data-passkey-register")).then(function (started) {
        if (!started) {
          HTMLFormElement.prototype.submit.call(register);
          return;
        }
        return navigator.credentials.create({ publicKey: creationOptions(started.options) }).then(function (credential) {
          finish(register, started, credential);
        });
      }).catch(function () {
        say(register, "No passkey was added (the prompt was closed, or this device already has one).");
      });
    });
  }

  var login = document.querySelector("form[data-passkey-login]");
  if (login) {
    var url = login.getAttribute("data-passkey-login");
    var pending = null;
    var ask = function (mediation) {
      if (pending) {
        pending.abort();
      }
      var controller = new AbortController();
      pending = controller;
      return challenge(login, url).then(function (started) {
        if (!started) {
          throw new Error("no challenge");
        }
        var options = { publicKey: requestOptions(started.options), signal: controller.signal };
        if (mediation) {
          options.mediation = mediation;
        }
        return navigator.credentials.get(options).then(function (credential) {
          if (credential) {
            finish(login, started, credential);
          }
        });
      });
    };
    login.addEventListener("submit", function (event) {
      event.preventDefault();
      say(login, "Follow your browser's prompt…");
      ask(null).catch(function (error) {
        if (error && error.name !== "AbortError") {
          say(login, "No passkey was used. Try again, or sign in with your password.");
        }
      });
    });
    // The browser's autofill offers passkeys in the e-mail field, where it can.
    if (PKC.isConditionalMediationAvailable) {
      PKC.isConditionalMediationAvailable().then(function (available) {
        if (available) {
          ask("conditional").catch(function () {});
        }
      });
    }
  }
})();
