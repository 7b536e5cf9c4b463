# instructions-table.awk: the markdown table of scripts/bench/instructions.sh from its raw
# counts (target/bench/instructions.tsv: label, run, scenario, requests, seconds, instructions,
# what; tab-separated). Builds are columns in the order they first appear (the base first),
# each cell the mean instructions per request with every run in brackets; with two builds or
# more, the last over the first, marked where it exceeds 1 + tolerance. Then the idle rate.
#   awk -F'\t' -v tolerance=0.05 -f scripts/bench/instructions-table.awk target/bench/instructions.tsv

# 1234567 -> 1,234,567
function group(n,   s, out) {
    s = sprintf("%.0f", n)
    out = ""
    while (length(s) > 3) {
        out = "," substr(s, length(s) - 2) out
        s = substr(s, 1, length(s) - 3)
    }
    return s out
}

{
    label = $1
    scenario = $3
    if (!(label in seen)) { seen[label] = 1; labels[++count] = label }
    if (scenario == "idle") { idle_sum[label] += $6 / $5; idle_n[label]++; next }
    if (!(scenario in what)) { order[++scenarios] = scenario; what[scenario] = $7 }
    per = $6 / $4
    sum[label, scenario] += per
    n[label, scenario]++
    runs[label, scenario] = runs[label, scenario] (runs[label, scenario] == "" ? "" : " · ") group(per)
    seconds[label, scenario] += $5
    total[label, scenario] += $6
}

END {
    if (tolerance == "") tolerance = 0.05
    header = "| request |"
    rule = "|---|"
    for (i = 1; i <= count; i++) {
        header = header " `" labels[i] "` instructions / request (runs) |"
        rule = rule "--:|"
    }
    if (count > 1) {
        header = header " `" labels[count] "` / `" labels[1] "` |"
        rule = rule "--:|"
    }
    print header
    print rule
    for (k = 1; k <= scenarios; k++) {
        s = order[k]
        row = "| **" s "** " what[s] " |"
        for (i = 1; i <= count; i++) {
            mean[i] = n[labels[i], s] ? sum[labels[i], s] / n[labels[i], s] : 0
            row = row " " group(mean[i]) " (" runs[labels[i], s] ") |"
        }
        if (count > 1) {
            ratio = mean[1] ? mean[count] / mean[1] : 0
            row = row sprintf(" %.3f%s |", ratio, ratio > 1 + tolerance ? " **over +" tolerance * 100 "%**" : "")
        }
        print row
    }
    print ""
    line = "Background while idle (the server's timers, no request), instructions per second:"
    for (i = 1; i <= count; i++) {
        rate = idle_n[labels[i]] ? idle_sum[labels[i]] / idle_n[labels[i]] : 0
        worst = 0
        for (k = 1; k <= scenarios; k++) {
            s = order[k]
            if (total[labels[i], s] > 0) {
                share = rate * seconds[labels[i], s] / total[labels[i], s]
                if (share > worst) worst = share
            }
        }
        line = line sprintf(" `%s` %s (at most %.2f%% of any count above)%s", labels[i], group(rate), worst * 100, i < count ? ";" : ".")
    }
    print line
}
