// Loaded by the book (book/_ext/offline_assets.py) on pages with stored ipywidgets state, after
// RequireJS and before the ipywidgets HTML manager (embed-amd.js).
(function () {
  "use strict";
  var here = document.currentScript.src;
  // The manager finds its fonts next to where RequireJS thinks its modules live; point those
  // module names at the copy in _static/offline/ instead of the page's own folder.
  require.config({
    paths: {"@jupyter-widgets/html-manager/dist": new URL("html-manager/dist", here).href.replace(/\/$/, "")}
  });
  // ipywidgets' controls typeset their labels with MathJax 2's MathJax.Hub.Queue; this book
  // loads MathJax 3, which has no Hub. Route those calls to MathJax 3's typesetPromise.
  function typeset(mj, element) {
    mj.startup.promise.then(function () { return mj.typesetPromise([element]); });
  }
  function addHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.version || String(mj.version).charAt(0) !== "3") return;
    mj.Hub = {
      Queue: function () {
        for (var i = 0; i < arguments.length; i++) {
          var job = arguments[i];
          if (Array.isArray(job) && job[0] === "Typeset" && job[2]) typeset(mj, job[2]);
        }
      }
    };
  }
  document.addEventListener("DOMContentLoaded", addHub);
})();
