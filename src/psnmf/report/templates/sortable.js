// Sort the body rows of every <table class="sortable"> by the column whose header is
// clicked (again: the other way). A cell's data-sort attribute, when present, is its
// numeric key; other cells sort by their text. The header gets aria-sort.
document.querySelectorAll("table.sortable").forEach(function (table) {
  const heads = table.querySelectorAll("thead th");
  heads.forEach(function (th, col) {
    th.classList.add("sort-key");
    th.setAttribute("title", "sort by this column");
    th.addEventListener("click", function () {
      const up = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.prototype.slice.call(body.rows);
      const key = function (tr) {
        const cell = tr.cells[col];
        const v = cell.getAttribute("data-sort");
        return v === null ? cell.textContent.trim() : parseFloat(v);
      };
      rows.sort(function (a, b) {
        const ka = key(a), kb = key(b);
        const c = typeof ka === "number" && typeof kb === "number"
          ? ka - kb : String(ka).localeCompare(String(kb), undefined, {numeric: true});
        return up ? c : -c;
      });
      rows.forEach(function (tr) { body.appendChild(tr); });
    });
  });
});
