(function () {
  // Progressive enhancement: filter the table while typing. Without JavaScript the form
  // is submitted and the server hides the rows that do not match.
  var form = document.getElementById("filters");
  var table = document.getElementById("missions");
  if (!form || !table || !window.URL || !history.replaceState) return;
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var shown = document.getElementById("shown-count");
  function apply() {
    var text = form.q.value.trim().toLowerCase(), state = form.state.value, n = 0;
    rows.forEach(function (row) {
      var match = (!text || row.getAttribute("data-search").indexOf(text) >= 0) &&
                  (!state || row.getAttribute("data-state") === state);
      row.hidden = !match;
      if (match) n++;
    });
    shown.textContent = n;
    // Keep the filter in the address, so that the refresh and a bookmark keep it too.
    var url = new URL(location.href);
    if (text) url.searchParams.set("q", form.q.value.trim()); else url.searchParams.delete("q");
    if (state) url.searchParams.set("state", state); else url.searchParams.delete("state");
    history.replaceState(null, "", url);
  }
  form.q.addEventListener("input", apply);
  form.state.addEventListener("change", apply);
})();
