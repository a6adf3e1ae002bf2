//! Objects of a binary mask: its 8-connected components, as micro-sam's evaluation and MedicoSAM's training
//! data define an object (a class mask split into the pieces a user would click on one at a time).

/// 8-connected components of `mask` with at least `min_pixels` pixels, each as a full-size mask.
pub fn components(mask: &[bool], (h, w): (usize, usize), min_pixels: usize) -> Vec<Vec<bool>> {
    let mut label = vec![0usize; h * w];
    let mut objects = Vec::new();
    let mut next = 0;
    for seed in 0..h * w {
        if !mask[seed] || label[seed] != 0 {
            continue;
        }
        next += 1;
        label[seed] = next;
        let mut stack = vec![seed];
        let mut pixels = Vec::new();
        while let Some(i) = stack.pop() {
            pixels.push(i);
            let (y, x) = ((i / w) as i64, (i % w) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (ny, nx) = (y + dy, x + dx);
                    if ny < 0 || nx < 0 || ny >= h as i64 || nx >= w as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if mask[j] && label[j] == 0 {
                        label[j] = next;
                        stack.push(j);
                    }
                }
            }
        }
        if pixels.len() >= min_pixels {
            let mut object = vec![false; h * w];
            for i in pixels {
                object[i] = true;
            }
            objects.push(object);
        }
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_8_connected_and_small_ones_dropped() {
        // Two diagonal-touching pixels form one component; a 25-pixel square is kept, a 4-pixel one dropped.
        let hw = (20, 20);
        let mut mask = vec![false; 400];
        for y in 0..5 {
            for x in 0..5 {
                mask[y * 20 + x] = true;
            }
        }
        mask[5 * 20 + 5] = true; // touches (4, 4) diagonally: joins the square
        for y in 10..12 {
            for x in 10..12 {
                mask[y * 20 + x] = true;
            }
        }
        let objects = components(&mask, hw, 20);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].iter().filter(|&&m| m).count(), 26);
        assert_eq!(components(&mask, hw, 1).len(), 2);
    }
}
