// advrepro: instant search and filters on the index page.
// The index comes from search-index.js (window.ADVREPRO_INDEX), a script rather than a JSON
// fetch, because browsers refuse fetch() of local files when the site is opened from file://.
(function () {
  "use strict";
  var index = window.ADVREPRO_INDEX;
  var form = document.getElementById("search-form");
  var table = document.getElementById("papers");
  if (!index || !form || !table) { return; }

  // Fold text the way the build does (sitebuilder.text.search_text): lower case, no accents.
  function fold(text) {
    return String(text || "").normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }

  var byKey = {};
  index.papers.forEach(function (p) { byKey[p.key] = p; });
  var rows = Array.prototype.slice.call(table.tBodies[0].rows).map(function (tr) {
    return { tr: tr, paper: byKey[tr.getAttribute("data-key")] };
  }).filter(function (r) { return r.paper; });

  var q = document.getElementById("q");
  var fStatus = document.getElementById("f-status");
  var fList = document.getElementById("f-list");
  var fYear = document.getElementById("f-year");
  var fVenue = document.getElementById("f-venue");
  var count = document.getElementById("result-count");
  var empty = document.getElementById("no-results");
  var total = rows.length;

  function apply() {
    var terms = fold(q.value).split(/\s+/).filter(Boolean);
    var status = fStatus.value, list = fList.value, year = fYear.value, venue = fVenue.value;
    var shown = 0;
    rows.forEach(function (r) {
      var p = r.paper;
      var ok = (!status || p.status === status) &&
        (!list || p.lists.indexOf(list) !== -1) &&
        (!year || String(p.year) === year) &&
        (!venue || p.venue === venue);
      for (var i = 0; ok && i < terms.length; i++) {
        ok = p.text.indexOf(terms[i]) !== -1;
      }
      r.tr.hidden = !ok;
      if (ok) { shown++; }
    });
    count.textContent = shown === total ? total + " papers" : shown + " of " + total + " papers";
    empty.hidden = shown !== 0;
  }

  // Restore a search from the address (index.html?q=gan&status=pending), so it can be shared.
  var params = new URLSearchParams(window.location.search);
  if (params.get("q")) { q.value = params.get("q"); }
  [["status", fStatus], ["list", fList], ["year", fYear], ["venue", fVenue]].forEach(function (pair) {
    var value = params.get(pair[0]);
    if (value && Array.prototype.some.call(pair[1].options, function (o) { return o.value === value; })) {
      pair[1].value = value;
    }
  });

  form.hidden = false;
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("reset", function () { window.setTimeout(apply, 0); });
  apply();
})();
