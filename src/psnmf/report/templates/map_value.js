// CustomJSHover of the code maps (interactive.py _code_hover): the value of a pixel from
// its colour code. Args: names (renderer names), lows, highs (each renderer's colour
// range), unit. Code c stands for [low + c step, low + (c + 1) step), step = (high - low)
// / 255, shown as its centre to 3 digits; codes 0 and 254 also hold what lies beyond the
// range, shown as a bound; 255 is a pixel without value.
const i = names.indexOf(special_vars.name);
if (i < 0 || value === 255) {
  return "none";
}
const lo = lows[i], step = (highs[i] - lo) / 255;
const fmt = (v) => Number(v.toPrecision(3)).toString();
if (value >= 254) {
  return ">= " + fmt(lo + 254 * step) + " " + unit;
}
if (value <= 0) {
  return "< " + fmt(lo + step) + " " + unit;
}
return "~" + fmt(lo + (value + 0.5) * step) + " " + unit;
