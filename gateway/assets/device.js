/*
 * Juhe device id: a hash of stable browser signals, for risk rules and lists (customer.device_id).
 *
 * Served by the gateway at /checkout/device.js. The hosted cashier page loads it and sends the id
 * with the customer's card; a merchant's own checkout page loads it the same way and sends
 * `await window.juheDevice.id` as customer.device_id when it creates the payment.
 *
 * The id is "dev_" and the first 32 characters of the unpadded base64url SHA-256 of these lines,
 * joined by "\n": the scheme "juhe-device-v1", the preferred languages, the time zone, the screen
 * (width x height x colour depth), the pixel ratio, the logical processors, the device memory,
 * the touch points, the platform, and a small canvas drawing as a data URL (it differs with the
 * fonts, the graphics stack and the anti-aliasing). The browser version is left out on purpose:
 * it changes every few weeks, the device does not. Nothing leaves the page but the id, and
 * nothing is stored in the browser.
 */
(function () {
  "use strict";

  function canvas() {
    var c = document.createElement("canvas");
    c.width = 240;
    c.height = 60;
    var g = c.getContext("2d");
    if (!g) return "";
    g.textBaseline = "top";
    g.font = "16px sans-serif";
    g.fillStyle = "#f60";
    g.fillRect(100, 1, 62, 20);
    g.fillStyle = "#069";
    g.fillText("Juhe \u805a\u5408 device 1.0", 2, 15);
    g.fillStyle = "rgba(102, 204, 0, 0.7)";
    g.beginPath();
    g.arc(200, 30, 20, 0, Math.PI * 2);
    g.fill();
    return c.toDataURL();
  }

  function signals() {
    var n = navigator;
    var s = window.screen || {};
    return [
      "juhe-device-v1",
      (n.languages && n.languages.length ? n.languages : [n.language || ""]).join(","),
      Intl.DateTimeFormat().resolvedOptions().timeZone || "",
      [s.width, s.height, s.colorDepth].join("x"),
      String(window.devicePixelRatio || 1),
      String(n.hardwareConcurrency || ""),
      String(n.deviceMemory || ""),
      String(n.maxTouchPoints || 0),
      n.platform || "",
      canvas(),
    ].join("\n");
  }

  function base64url(bytes) {
    var text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function compute(text) {
    var digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
    return "dev_" + base64url(new Uint8Array(digest)).slice(0, 32);
  }

  var id = compute(signals());
  window.juheDevice = { id: id, signals: signals };
  id.then(function (value) {
    var fields = document.querySelectorAll('input[name="device_id"]');
    for (var i = 0; i < fields.length; i++) fields[i].value = value;
  });
})();
