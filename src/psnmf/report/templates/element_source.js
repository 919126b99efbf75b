// CustomJS of the elemental-map source buttons: show the maps of the chosen method.
// Args: groups (per line, one image renderer per method), bars (per line, its colour bar),
// mappers (per line, one colour mapper per method), methods (method keys by button).
const m = cb_obj.active;
for (let i = 0; i < groups.length; i++) {
  for (let j = 0; j < groups[i].length; j++) {
    groups[i][j].visible = j === m;
  }
  bars[i].color_mapper = mappers[i][m];
}
document.body.setAttribute("data-element-source", methods[m]);
