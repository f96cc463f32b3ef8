// The viewer page: scroll frames (buttons, arrow keys, mouse wheel) and pick window/level presets.
// Plain JavaScript, no library; the frames' URLs are in the page (#frames li[data-src]).
(function () {
  "use strict";
  var img = document.getElementById("frame");
  var list = document.getElementById("frames");
  if (!img || !list) {
    return;
  }
  var frames = Array.prototype.map.call(list.querySelectorAll("li"), function (li) {
    return li.getAttribute("data-src");
  });
  var number = document.getElementById("frame-no");
  var presets = document.querySelectorAll("#presets button[data-window]");
  var index = 0;
  var windowValue = "";

  function show() {
    var src = frames[index];
    if (windowValue) {
      src += "?window=" + encodeURIComponent(windowValue);
    }
    img.setAttribute("src", src);
    if (number) {
      number.textContent = String(index + 1);
    }
  }

  function step(delta) {
    var next = Math.min(frames.length - 1, Math.max(0, index + delta));
    if (next !== index) {
      index = next;
      show();
    }
  }

  document.getElementById("prev").addEventListener("click", function () { step(-1); });
  document.getElementById("next").addEventListener("click", function () { step(1); });
  img.addEventListener("wheel", function (event) {
    event.preventDefault();
    step(event.deltaY > 0 ? 1 : -1);
  }, { passive: false });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT")) {
      return;
    }
    if (event.key === "ArrowDown" || event.key === "PageDown") {
      event.preventDefault();
      step(1);
    } else if (event.key === "ArrowUp" || event.key === "PageUp") {
      event.preventDefault();
      step(-1);
    }
  });
  Array.prototype.forEach.call(presets, function (button) {
    button.addEventListener("click", function () {
      windowValue = button.getAttribute("data-window") || "";
      Array.prototype.forEach.call(presets, function (other) {
        other.setAttribute("aria-pressed", other === button ? "true" : "false");
      });
      show();
    });
  });
}());
